"""The brain an agent was spawned with is on the record (AGENT_SPAWNED), and a resume
in another host, whose default brain is another, rebuilds the same one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.brains import BRAINS
from sisyphus_tui.brains.base import Thought
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.errors import HostFault
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store


class RecordedBrain(ScriptedBrain):
    """The scripted brain under another name; its first green of step 2 trips."""

    tripped = False

    async def think(self, thought: Thought) -> dict[str, Any]:
        if thought.purpose == "green" and thought.data.get("step") == 2 and \
                not RecordedBrain.tripped:
            RecordedBrain.tripped = True
            raise RuntimeError("tripped once")
        return await super().think(thought)


async def test_a_resume_rebuilds_the_brain_the_agent_was_spawned_with(tmp_path: Path) -> None:
    BRAINS["recorded"] = RecordedBrain
    RecordedBrain.tripped = False
    try:
        db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
        async with await open_store(db) as store:
            await prepare_demo(store, workspace)
            with pytest.raises(HostFault):
                await Swarm(store, workspace, brain="recorded").run()
            spawned = (await store.read(0, 1000, types=["AGENT_SPAWNED"])).events
            team = {e.payload["agent"]: e.payload.get("brain") for e in spawned}
            assert team == {"kernel": None, "planner": "recorded", "validator": "recorded",
                            "executor": "recorded", "researcher": "recorded"}
            again = Swarm(store, workspace, brain="scripted")
            ledger = await again.run()
    finally:
        del BRAINS["recorded"]
    assert ledger.phase == "done"
    assert type(again.actors["executor"].brain) is RecordedBrain
