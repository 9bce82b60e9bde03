"""The ledger as the story's model: pending messages, wipes and resumes, host restarts
(the Recoveries section), true states (paused, blocked, no host), the human gate the
kernel really waits for, why a control request would not be carried out, and the whole
of a multi-line blocked reason, shown literally."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sisyphus_tui.ledger import Ledger
from sisyphus_tui.narrative import line, summary
from sisyphus_tui.stream import Event
from tests.test_ledger_safety import ACTING, rendered
from tests.tui.fixtures import T0

Row = tuple[str, str | None, str | None, dict[str, Any]]
SPEC = {"gates": [{"name": "tests", "argv": ["pytest"]}, {"name": "signoff", "human": True}]}


def team() -> list[Row]:
    """A run's start: the task, the kernel and an executor spawned."""
    out: list[Row] = [("TASK_INIT", "human", "kernel", {"goal": "g", "spec": SPEC})]
    for name in ("kernel", "executor"):
        out += [("AGENT_SPAWNED", "swarm", None, {"agent": name, "role": name}),
                ("AGENT_REGISTERED", name, None, {"agent": name, "role": name})]
    out += [("AGENT_REGISTERED", "human", None, {"agent": "human", "role": "human"}),
            ("AGENT_REGISTERED", "outsider", None, {"agent": "outsider"})]
    return out


def fold(rows: list[Row], ledger: Ledger | None = None) -> Ledger:
    ledger = ledger or Ledger()
    for type_, actor, to, payload in rows:
        offset = ledger.offset + 1
        problem = ledger.apply(Event(offset, type_, actor, to, payload, T0 + offset, None))
        assert problem is None, problem
    return ledger


def message(to: str, kind: str = "note", **data: Any) -> Row:
    return ("MESSAGE", "kernel", to, {"kind": kind, "text": kind, "data": data})


def checkpoint(agent: str, cursor: int, **state: Any) -> Row:
    return ("CHECKPOINT", agent, None, {"agent": agent, "cursor": cursor, "state": state})


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n\n", 1)[1].split("\n## ", 1)[0]


# -- pending messages --------------------------------------------------------------


def test_pending_counts_what_is_addressed_after_the_cursor() -> None:
    ledger = fold([message("executor"), *team(), message("executor"), message("executor"),
                   message("human"), message("outsider")])
    executor = ledger.agents["executor"]
    # One written before it was registered counts too: it is in its inbox.
    assert executor.pending == 3
    assert ledger.agents["outsider"].pending == 1
    # A person and the swarm read without a checkpoint: no count that only grows.
    assert ledger.agents["human"].pending == 0
    second = ledger.offset - 2
    fold([checkpoint("executor", second - 1)], ledger)
    assert executor.pending == 1 and executor.cursor == second - 1
    fold([("RESUMED", "executor", None, {"agent": "executor", "cursor": second,
                                         "reread": 1, "duration_ms": 0.5})], ledger)
    assert executor.pending == 0
    fold([checkpoint("executor", 2)], ledger)  # a cursor never moves back
    assert executor.cursor == second and executor.pending == 0


# -- wipes, resumes, host restarts: the Recoveries section -------------------------


def recovery_log() -> list[Row]:
    return [*team(), ("PHASE", "kernel", None, {"phase": "execute"}),
            ("CONTROL", "human", "swarm", {"action": "wipe", "agent": "executor"}),
            ("CONTEXT_WIPED", "swarm", None, {"agent": "executor", "lost": {}}),
            ("RESUMED", "executor", None, {"agent": "executor", "cursor": 3, "reread": 2,
                                           "duration_ms": 1.75}),
            ("RUN_RESUMED", "swarm", None, {"at": 15, "phase": "execute", "done": 1,
                                            "total": 4})]


def test_a_wipe_a_resume_and_a_restart_are_on_the_agent_and_in_the_ledger() -> None:
    ledger = fold(recovery_log()[:-2])
    executor = ledger.agents["executor"]
    assert executor.state == "wiped" and executor.wiped_ts == T0 + ledger.offset
    assert executor.resumed_ts is None
    fold(recovery_log()[-2:], ledger)
    assert executor.state == "idle" and executor.resumed_ts == T0 + ledger.offset - 1
    assert (executor.resumed_from, executor.reread, executor.resume_ms) == (3, 2, 1.75)
    assert ledger.last_interruption == {"ts": T0 + ledger.offset, "at": 15,
                                        "phase": "execute", "done": 1, "total": 4,
                                        "offset": ledger.offset}
    assert [r["kind"] for r in ledger.recoveries] == ["wipe", "resume", "host"]
    # Offsets 10, 11 and 12, time stamped T0 + offset (2027-01-15 08:00:00Z).
    assert section(ledger.render(), "Recoveries").splitlines() == [
        "- 2027-01-15 08:00:10Z #10: executor: context wiped, requested by human",
        "- 2027-01-15 08:00:11Z #11: executor: resumed from checkpoint @3 (2 events "
        "re-read, 1.8 ms)",
        "- 2027-01-15 08:00:12Z #12: host: resumed at step 2/4 after an interruption (the "
        "log was at offset 15)",
    ]


def test_the_recoveries_section_is_a_function_of_the_events() -> None:
    events = recovery_log()
    assert fold(events).render() == fold(events).render()
    assert "## Recoveries\n\n- (none)\n" in fold(team()).render()
    # The headless story line of a restart, and the phases it may resume in.
    restart = Event(9, "RUN_RESUMED", "swarm", None, events[-1][3], T0, None)
    assert line(restart) == "[9] swarm: resumed at step 2/4 after an interruption"
    for payload, said in [
        ({"at": 5, "phase": "plan", "done": 0, "total": 0},
         "resumed in phase plan after an interruption"),
        ({"at": 5, "phase": "gates", "done": 4, "total": 4},
         "resumed in phase gates (4/4 steps done) after an interruption"),
        ({"at": 5, "phase": "execute", "done": 4, "total": 4},
         "resumed at step 4/4 after an interruption")]:
        assert summary(Event(9, "RUN_RESUMED", "swarm", None, payload, T0, None)) == said


def test_a_bad_restart_record_is_skipped_not_folded() -> None:
    ledger = fold(team())
    bad = Event(ledger.offset + 1, "RUN_RESUMED", "swarm", None,
                {"at": "x", "phase": "execute", "done": 1, "total": 4}, T0, None)
    assert ledger.apply(bad) is not None
    assert ledger.last_interruption is None and ledger.recoveries == []


# -- true states -------------------------------------------------------------------


def status(agent: str, state: str) -> Row:
    return ("STATUS_UPDATE", agent, None, {"agent": agent, "state": state})


@pytest.mark.parametrize(("state", "paused", "hosted", "shown"), [
    ("working", True, None, "paused"), ("idle", True, True, "paused"),
    ("waiting", True, None, "paused"), ("failed", True, None, "failed"),
    ("wiped", True, None, "wiped"), ("working", False, False, "no host"),
    ("wiped", True, False, "no host"), ("failed", False, False, "failed"),
    ("working", False, None, "working"), ("working", False, True, "working"),
])
def test_the_state_shown_while_the_run_goes_on(state: str, paused: bool,
                                               hosted: bool | None, shown: str) -> None:
    rows = [*team(), ("PHASE", "kernel", None, {"phase": "execute"}), status("executor", state)]
    if paused:
        rows.append(("CONTROL", "human", "swarm", {"action": "pause"}))
    ledger = fold(rows)
    assert ledger.shown_state(ledger.agents["executor"], hosted=hosted) == shown
    # An agent no host runs (registered only, a person) is as it says.
    for name in ("outsider", "human"):
        assert ledger.shown_state(ledger.agents[name], hosted=False) == "registered"


def test_after_a_blocked_run_agents_read_blocked_not_done() -> None:
    ledger = fold([*team(), ("PHASE", "kernel", None, {"phase": "blocked", "reason": "r"}),
                   ("AGENT_STOPPED", "swarm", None, {"agent": "kernel", "reason": "blocked"}),
                   ("AGENT_FAILED", "swarm", None, {"agent": "executor", "error": "e"})])
    assert ledger.shown_state(ledger.agents["kernel"], hosted=False) == "blocked"
    assert ledger.shown_state(ledger.agents["executor"], hosted=False) == "failed"
    # The ledger's own table says so too.
    agents = section(ledger.render(), "Agents")
    assert "| kernel | kernel | - | blocked |" in agents
    assert "| executor | executor | - | failed |" in agents
    done = fold([*team(), ("PHASE", "kernel", None, {"phase": "done"}),
                 ("AGENT_STOPPED", "swarm", None, {"agent": "kernel"})])
    # The run is over: nothing should run it, so no "no host".
    assert done.shown_state(done.agents["kernel"], hosted=False) == "done"


# -- the human gate the kernel waits for --------------------------------------------


def at_the_gate() -> list[Row]:
    return [*team(), ("PHASE", "kernel", None, {"phase": "gates"}),
            ("GATE_RESULT", "kernel", None, {"gate": "tests", "passed": True}),
            status("kernel", "waiting"), checkpoint("kernel", 1, waiting_gate="signoff")]


def test_waiting_for_human_is_what_the_kernel_waits_for() -> None:
    assert fold(at_the_gate()).waiting_for_human() == ["signoff"]
    # A status that says waiting is not enough: the kernel's own checkpoint says it.
    assert fold(at_the_gate()[:-1]).waiting_for_human() == []
    # Paused, it still waits for the person.
    paused = at_the_gate() + [("CONTROL", "human", "swarm", {"action": "pause"})]
    assert fold(paused).waiting_for_human() == ["signoff"]


@pytest.mark.parametrize("answer", [
    ("CONTROL", "human", "swarm", {"action": "approve", "gate": "signoff"}),
    message("kernel", "approve", gate="signoff"),
    checkpoint("kernel", 2),
    ("GATE_RESULT", "kernel", None, {"gate": "signoff", "passed": True}),
    ("PHASE", "kernel", None, {"phase": "blocked", "reason": "r"}),
])
def test_an_answer_on_its_way_ends_the_wait(answer: Row) -> None:
    assert fold([*at_the_gate(), answer]).waiting_for_human() == []


def test_an_approval_of_another_gate_does_not() -> None:
    other = ("CONTROL", "human", "swarm", {"action": "approve", "gate": "tests"})
    assert fold([*at_the_gate(), other]).waiting_for_human() == ["signoff"]


# -- why a request would not be carried out -----------------------------------------


@pytest.mark.parametrize(("action", "agent", "why"), [
    ("wipe", "executor", "the run is done: nothing will carry out a wipe"),
    ("unpause", None, "the run is done: nothing will carry out an unpause"),
    ("spawn", "r9", "the run is done: nothing will carry out a spawn"),
])
def test_after_the_run_nothing_carries_a_request_out(action: str, agent: str | None,
                                                     why: str) -> None:
    ledger = fold([*team(), ("PHASE", "kernel", None, {"phase": "done"})])
    assert ledger.refusal(action, agent) == why


@pytest.mark.parametrize(("rows", "action", "agent", "why"), [
    ([status("executor", "working")], "resume", "executor",
     "executor is not wiped (it is working): nothing to resume"),
    ([status("executor", "working"), ("CONTROL", "human", "swarm", {"action": "pause"})],
     "resume", "executor", "executor is not wiped (it is paused): nothing to resume"),
    ([("CONTEXT_WIPED", "swarm", None, {"agent": "executor"})], "resume", "executor", None),
    ([("AGENT_FAILED", "swarm", None, {"agent": "executor", "error": "e"})], "resume",
     "executor", None),
    ([], "wipe", "executor", None),
    ([], "wipe", "ghost", "unknown agent 'ghost': no such agent in this run"),
    ([], "resume", "human", "human is not an agent the swarm runs: nothing to resume"),
    ([], "wipe", "outsider", "outsider is not an agent the swarm runs: nothing to wipe"),
    ([], "wipe", None, "a wipe needs an agent"),
    ([], "spawn", "executor", "an agent named executor already exists"),
    ([], "spawn", "r1", None),
    ([], "pause", None, None),
    # A block that was a fault is lifted by the next host, which carries requests out.
    ([("PHASE", "kernel", None, {"phase": "blocked", "reason": "agent executor failed: "
                                                               "DatabaseLocked: x"})],
     "wipe", "executor", None),
])
def test_a_request_the_swarm_would_refuse_says_why(rows: list[Row], action: str,
                                                    agent: str | None,
                                                    why: str | None) -> None:
    ledger = fold([*team(), ("PHASE", "kernel", None, {"phase": "execute"}), *rows])
    assert ledger.refusal(action, agent) == why


def test_an_approval_the_run_has_no_use_for_says_why() -> None:
    ledger = fold(at_the_gate())
    assert ledger.refusal("approve", gate="signoff") is None
    assert ledger.refusal("approve", gate="tests") == (
        "tests is a command gate: it runs itself, nothing to approve")
    assert ledger.refusal("approve", gate="nope") == (
        "unknown gate 'nope': no such gate in this run's spec")
    fold([("GATE_RESULT", "kernel", None, {"gate": "signoff", "passed": True})], ledger)
    assert ledger.refusal("approve", gate="signoff") == "gate signoff is already approved"


# -- an honest blocked reason -------------------------------------------------------

PYTEST_OUTPUT = (
    "step 2 failed: F.\n"
    "=================================== FAILURES ===================================\n"
    "____ test_orders ____\n"
    "    assert find('```') == [1]  # [red]x[/] *not emphasis*\n"
    "E   \x1b]2;pwned\x07 AssertionError\n"
    "````\n"
    "# not a heading\n"
    "=========================== 1 failed, 3 passed in 0.21s ===========================\n"
)


def test_a_multi_line_blocked_reason_is_kept_whole_and_literal() -> None:
    ledger = fold([*team(), ("PHASE", "kernel", None, {"phase": "blocked",
                                                       "reason": PYTEST_OUTPUT})])
    text = ledger.render()
    phase = next(row for row in text.splitlines() if row.startswith("- **Phase:**"))
    assert phase == "- **Phase:** blocked (step 2 failed: F. … 1 failed, 3 passed in 0.21s)"
    block = section(text, "Blocked")
    fence = block.splitlines()[0]
    assert fence == "`````text" and block.rstrip("\n").splitlines()[-1] == "`````"
    assert not ACTING.search(text)
    shown = rendered(text)
    # Every line shows as it was, escapes visible, none read as Markdown.
    for expected in ["assert find('```') == [1]  # [red]x[/] *not emphasis*",
                     r"E   \x1b]2;pwned\x07 AssertionError", "````", "# not a heading",
                     "1 failed, 3 passed in 0.21s"]:
        assert expected in shown, shown
    assert re.search(r"^## Blocked$", text, re.M)
    # Not blocked: no section.
    assert "## Blocked" not in fold([*team(), ("PHASE", "kernel", None,
                                                {"phase": "execute"})]).render()
