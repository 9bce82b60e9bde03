"""A brain's answers are checked where it answers: a malformed one is sent back once in
the same session, naming the field, and a second one fails the turn, saying which field;
the demo's swarm, in-process, on a real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.brains import BRAINS
from sisyphus_tui.brains.base import Thought
from sisyphus_tui.brains.decisions import InvalidDecision, check_decision
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.errors import HostFault
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store

ASKED: list[dict[str, Any]] = []


class SloppyPlanner(ScriptedBrain):
    """Forgets a step's title; with ``always``, every time."""

    always = False

    async def think(self, thought: Thought) -> dict[str, Any]:
        answer = await super().think(thought)
        if thought.purpose == "plan":
            ASKED.append(dict(thought.data))
            if SloppyPlanner.always or "invalid_answer" not in thought.data:
                answer["steps"][0].pop("title")
        return answer


async def run(tmp_path: Path) -> Any:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        return await Swarm(store, workspace, brain="sloppy").run()


@pytest.fixture(autouse=True)
def sloppy() -> Any:
    BRAINS["sloppy"] = SloppyPlanner
    ASKED.clear()
    yield
    del BRAINS["sloppy"]
    SloppyPlanner.always = False


async def test_a_malformed_answer_is_sent_back_once_naming_the_field(tmp_path: Path) -> None:
    ledger = await run(tmp_path)
    assert ledger.phase == "done"
    # Each plan was asked twice: the second time with what was wrong.
    assert [a.get("invalid_answer") for a in ASKED] == [
        None, "the plan answer is invalid: steps.0.title: Field required"] * 2


async def test_a_second_malformed_answer_fails_the_turn_saying_which_field(
        tmp_path: Path) -> None:
    SloppyPlanner.always = True
    with pytest.raises(HostFault, match="planner failed: InvalidDecision: the plan answer "
                                        "is invalid: steps.0.title: Field required"):
        await run(tmp_path)
    assert len(ASKED) == 2


@pytest.mark.parametrize(("purpose", "answer", "field"), [
    ("plan", {"steps": []}, "steps: List should have at least 1 item"),
    ("review", {"verdict": "maybe"}, "verdict: Input should be 'approve' or 'needs_changes'"),
    ("green", {"files": {"a.py": 1}}, "files.a.py: Input should be a valid string"),
    ("task", {"data": {}}, "text: Field required"),
    ("plan", ["not", "an", "object"], "Input should be a valid dictionary"),
])
def test_each_purpose_has_its_model(purpose: str, answer: Any, field: str) -> None:
    with pytest.raises(InvalidDecision, match=f"the {purpose} answer is invalid: "):
        check_decision(purpose, answer)
    try:
        check_decision(purpose, answer)
    except InvalidDecision as exc:
        assert field in str(exc)


SEEN: dict[str, Thought] = {}


class Listening(ScriptedBrain):
    """Remembers the first thought of each agent."""

    async def think(self, thought: Thought) -> dict[str, Any]:
        SEEN.setdefault(thought.agent, thought)
        return await super().think(thought)


async def test_the_skill_and_the_thinking_mode_reach_the_brain(tmp_path: Path) -> None:
    from sisyphus_tui.skills import get_skill

    BRAINS["listening"] = Listening
    SEEN.clear()
    try:
        db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
        async with await open_store(db) as store:
            await prepare_demo(store, workspace)
            ledger = await Swarm(store, workspace, brain="listening").run()
    finally:
        del BRAINS["listening"]
    assert ledger.phase == "done"
    for agent in ("planner", "validator", "executor", "researcher"):
        skill = get_skill(agent)
        thought = SEEN[agent]
        assert thought.instructions == skill.instructions and thought.instructions
        assert (thought.thinking, thought.tools, thought.timeout_s) == (
            ledger.agents[agent].thinking, skill.tools, skill.timeout_s)
