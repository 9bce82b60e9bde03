"""The test the swarm runs for a step is the one the plan names, read as a pytest target:
a leading ``pytest`` and the words after it dropped, never an option."""

from __future__ import annotations

from pathlib import Path

import pytest

from sisyphus_tui.actors.base import Turn
from sisyphus_tui.actors.executor import Executor
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store


@pytest.mark.parametrize(("written", "target"), [
    ("tests/test_calc.py::test_add asserts the sum", "tests/test_calc.py::test_add"),
    ("pytest tests/test_calc.py::test_add", "tests/test_calc.py::test_add"),
    ("`tests/test_calc.py` (existing tests)", "tests/test_calc.py"),
    ("-k evil::x", None),
    ("--co::x", None),
    ("run the whole suite", None),
    ("", None),
])
async def test_the_plans_test_as_a_target(tmp_path: Path, written: str,
                                          target: str | None) -> None:
    async with await open_store(tmp_path / "swarm.db") as store:
        swarm = Swarm(store, tmp_path, write_ledger=False)
        await store.append_many([
            {"type": "PLAN_INIT", "actor": "planner", "payload": {
                "plan_id": "plan-1", "summary": "s", "approach": "a", "revision": 1,
                "steps": 1, "precedents": []}},
            {"type": "PLAN_STEP", "actor": "planner", "payload": {
                "plan_id": "plan-1", "step": 1, "title": "t", "test": written,
                "files": []}}])
        for event in (await store.read()).events:
            swarm.ledger.apply(event)
        executor = Executor(swarm, "executor", ScriptedBrain())
        turn = Turn(executor, (await store.read()).events[-1])
        assert executor._step_test(turn, {"plan_id": "plan-1"}, 1) == target
