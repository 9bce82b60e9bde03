"""Live output: a turn appends what its agent says as it happens, outside the turn's
transaction, and a turn done again (after a crash or a wipe) writes each line once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sisyphus_tui.actors.base import Turn
from sisyphus_tui.actors.executor import Executor
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.errors import InvalidPayload
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store


async def test_output_is_appended_at_once_and_once_per_line(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "swarm.db") as store:
        swarm = Swarm(store, tmp_path, write_ledger=False)
        executor = Executor(swarm, "executor", ScriptedBrain())
        await store.append("x.n", {})
        (message,) = (await store.read()).events
        turn = Turn(executor, message)
        first = [await turn.output("text", "reading the repository"),
                 await turn.output("tool_call", "", {"tool": "read", "path": "a.py"},
                                   raw='{"type":"tool_use"}')]
        # In the log now, while the turn is open: nothing of it is committed yet.
        assert turn.outputs == [] and await store.head() == first[-1]
        # The turn done again (the process died before it committed): the same lines,
        # the same offsets, nothing new.
        again = Turn(executor, message)
        assert [await again.output("text", "reading the repository"),
                await again.output("tool_call", "", {"tool": "read", "path": "a.py"})] == first
        events = (await store.read(first[0], 10, types=["AGENT_OUTPUT"])).events
        assert [(e.payload["sequence"], e.payload["kind"], e.key) for e in events] == [
            (0, "text", f"output:executor:{message.offset}:0"),
            (1, "tool_call", f"output:executor:{message.offset}:1")]
        with pytest.raises(InvalidPayload, match="kind: Input should be"):
            await again.output("shouting", "no such kind")
