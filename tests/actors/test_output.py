"""Live output: a turn appends what its agent says as it happens, outside the turn's
transaction, each line keyed once; a turn done again (after a crash) goes on numbering
after what its first attempt wrote, so a real agent's second run is kept too."""

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
        # The turn done again (the process died before it committed): a real agent's
        # second run says other things; both attempts are on the record, in order.
        again = Turn(executor, message)
        redone = [await again.output("text", "reading it again"),
                  await again.output("finished", "done")]
        assert redone[0] > first[-1]
        events = (await store.read(first[0], 10, types=["AGENT_OUTPUT"])).events
        assert [(e.payload["sequence"], e.payload["kind"], e.key) for e in events] == [
            (0, "text", f"output:executor:{message.offset}:0"),
            (1, "tool_call", f"output:executor:{message.offset}:1"),
            (2, "text", f"output:executor:{message.offset}:2"),
            (3, "finished", f"output:executor:{message.offset}:3")]
        # Another message's turn numbers from 0.
        await store.append("x.n", {})
        other = (await store.read(redone[-1] + 1)).events[0]
        assert (await Turn(executor, other).output("text", "next")) > redone[-1]
        latest = await store.last(types=["AGENT_OUTPUT"])
        assert latest is not None and latest.payload["sequence"] == 0
        with pytest.raises(InvalidPayload, match="kind: Input should be"):
            await again.output("shouting", "no such kind")
