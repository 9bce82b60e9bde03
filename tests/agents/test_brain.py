"""A coding agent as a brain: what reaches its request (the skill's instructions, tools
and time limit, the thinking mode, the config's model, args and environment, the
session, a schema for answers and none for acts), what its prompts say, and how its
answer is read back."""

from __future__ import annotations

from pathlib import Path

from sisyphus_tui.agents.brain import AgentBrain, answer_of, json_in, prompt_for
from sisyphus_tui.agents.config import BrainConfig
from sisyphus_tui.agents.runner import AgentResult
from sisyphus_tui.brains.base import Thought
from sisyphus_tui.brains.decisions import check_decision
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream.base import Event


def event(offset: int, type_: str, payload: dict[str, object], actor: str = "kernel",
          to: str | None = None) -> Event:
    return Event(offset=offset, type=type_, actor=actor, to=to, key=None, ts=1.0,
                 payload=payload)


def ledger_with_a_plan() -> Ledger:
    ledger = Ledger()
    for e in [
        event(1, "TASK_INIT", {"goal": "fix calc.add", "spec": {}}, actor="human"),
        event(2, "PLAN_INIT", {"plan_id": "plan-1", "summary": "add adds",
                               "approach": "fix the operator", "revision": 1, "steps": 1,
                               "precedents": []}, actor="planner"),
        event(3, "PLAN_STEP", {"plan_id": "plan-1", "step": 1, "title": "Make add sum",
                               "test": "tests/test_calc.py::test_add", "files": ["calc.py"]},
              actor="planner"),
    ]:
        ledger.apply(e)
    return ledger


def thought(purpose: str, workspace: Path, **data: object) -> Thought:
    message = event(9, "MESSAGE", {"kind": "execute_step", "text": "step 1",
                                   "data": {"plan_id": "plan-1", "step": 1}}, to="executor")
    return Thought(purpose, "executor", "executor", ledger_with_a_plan(), message, dict(data),
                   instructions="You are the executor.", thinking="think",
                   tools=("Bash",), timeout_s=120.0, workspace=workspace,
                   session="ses-1")


def test_the_request_carries_the_agents_configuration(tmp_path: Path) -> None:
    config = BrainConfig(backend="claude", model="sonnet", thinking="ultrathink",
                         args=("--max-turns", "9"), env={"K": "v"}, allow=("Read",),
                         deny=("WebFetch",))
    brain = AgentBrain(config)
    request = brain.request(thought("green", tmp_path, step=1), "ses-1")
    assert request.instructions == "You are the executor."
    assert request.thinking == "ultrathink"  # the config's over the skill's
    assert request.timeout_s == 120.0  # the skill's limit
    assert request.permissions.allow == ("Read", "Bash")  # the skill's tools added
    assert request.permissions.deny == ("WebFetch",)
    assert (request.model, request.args, dict(request.env)) == ("sonnet", ("--max-turns", "9"),
                                                                {"K": "v"})
    assert request.session == "ses-1" and request.workspace == tmp_path
    assert request.state_dir == tmp_path / ".sisyphus" / "agents" / "executor"
    assert request.schema is None  # an act: the files say what it did
    assert not request.read_only
    plan = brain.request(thought("plan", tmp_path, revision=1), None)
    assert plan.schema is not None and "steps" in plan.schema["properties"]
    assert plan.read_only  # the planner reads the repository; it does not edit it


def test_the_prompts_say_what_each_role_needs(tmp_path: Path) -> None:
    red = prompt_for(thought("red", tmp_path, step=1))
    assert "fix calc.add" in red and "Make add sum" in red
    assert "tests/test_calc.py::test_add" in red and "Do not change the code" in red
    review = prompt_for(thought("review", tmp_path, plan_id="plan-1",
                                precedents=[{"id": 4, "title": "escaping", "what": "quotes",
                                             "outcome": "failed: injection"}]))
    assert "Make add sum" in review and "precedent #4" in review and '"verdict"' in review
    plan = prompt_for(thought("plan", tmp_path, revision=2, reasons=["too big"],
                              invalid_answer="the plan answer is invalid: steps: required"))
    assert "too big" in plan and "steps: required" in plan and "do not edit" in plan
    fix = prompt_for(thought("fix", tmp_path, gate="no-string-sql",
                             output_tail="audit.py:3 builds SQL"))
    assert "no-string-sql" in fix and "audit.py:3 builds SQL" in fix


def test_an_answer_is_read_back_as_its_decision() -> None:
    def result(text: str) -> AgentResult:
        return AgentResult("claude", 0, text=text, stop_reason="end_turn")

    fenced = 'Here it is:\n```json\n{"verdict": "approve", "reasons": ["ok"]}\n```\nBye.'
    assert check_decision("review", answer_of("review", result(fenced)))["verdict"] == "approve"
    inline = 'I think {"verdict": "needs_changes", "reasons": ["x"]} is right.'
    assert answer_of("review", result(inline))["verdict"] == "needs_changes"
    prose = answer_of("review", result("Looks fine!"))
    assert prose == {"_answer": "Looks fine!"}  # check_decision then names what is missing
    act = answer_of("green", result('{"files": {"calc.py": "evil"}}'))
    assert act["files"] == {}  # an act's claims are not taken: the files are looked at
    assert json_in("[1, 2]") is None and json_in("{not json") is None
