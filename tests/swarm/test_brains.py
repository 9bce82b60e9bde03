"""The brain an agent was spawned with is on the record (AGENT_SPAWNED), and a resume
in another host, whose default brain is another, rebuilds the same one."""

from __future__ import annotations

from pathlib import Path

import pytest

from sisyphus_tui.brains import BRAINS
from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.errors import HostFault
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store
from tests.swarm.test_hardening import FailingOnceBrain


async def test_a_resume_rebuilds_the_brain_the_agent_was_spawned_with(tmp_path: Path) -> None:
    # (The brain that fails once, under a name of its own: the first host stops on it.)
    BRAINS["recorded"] = FailingOnceBrain
    FailingOnceBrain.failed = False
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
    assert type(again.actors["executor"].brain) is FailingOnceBrain
