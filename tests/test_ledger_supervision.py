"""The fold of supervising real agents: a permission request makes its agent need
input until it is answered (the next request then), an allow-always is kept for the
run; a turn in progress from TURN_STARTED until its checkpoint; queued, stalled and
cancelled states; a killed host's question is not asked any more once the turn starts
again."""

from __future__ import annotations

from typing import Any

from sisyphus_tui.events import encode_payload
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream.base import Event

SHA = "b" * 64


class Log:
    """Events folded one by one, each checked against the registry first."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.offset = 0

    def add(self, type_: str, payload: dict[str, Any], actor: str = "executor") -> None:
        encode_payload(type_, payload)
        self.offset += 1
        assert self.ledger.apply(Event(self.offset, type_, actor, None, payload,
                                       1000.0 + self.offset, None)) is None


def asked(request: str, tool: str = "Bash") -> dict[str, Any]:
    return {"agent": "executor", "request": request, "message": 3, "tool": tool,
            "input": {"command": "pytest -q"}}


def test_a_question_is_needs_input_until_answered_and_always_is_kept() -> None:
    log = Log()
    log.add("AGENT_SPAWNED", {"agent": "executor", "role": "executor"}, actor="swarm")
    log.add("TURN_STARTED", {"agent": "executor", "message": 3, "backend": "claude",
                             "prompt_sha256": SHA})
    view = log.ledger.agents["executor"]
    assert (view.state, view.turn_message, view.turn_attempt) == ("working", 3, 1)
    log.add("PERMISSION_REQUESTED", asked("r1"))
    log.add("PERMISSION_REQUESTED", asked("r2", "WebFetch"))
    assert view.state == "needs input" and list(view.asking) == ["r1", "r2"]
    assert log.ledger.shown_state(view, hosted=True) == "needs input"
    log.add("AGENT_OUTPUT", {"agent": "executor", "message": 3, "sequence": 0,
                             "kind": "text", "text": "waiting"})
    assert view.state == "needs input"  # (what it said before it asked is no answer)
    log.add("PERMISSION_ANSWERED", {"agent": "executor", "request": "r1",
                                    "decision": "allow", "always": True}, actor="human")
    assert view.state == "needs input" and view.detail == "asks to use WebFetch"
    assert view.always == {"Bash"}
    log.add("PERMISSION_ANSWERED", {"agent": "executor", "request": "r2",
                                    "decision": "deny", "by": "timeout"})
    assert (view.state, view.detail, view.asking) == ("working", "denied WebFetch", {})
    assert view.always == {"Bash"}  # (a deny is never always)
    log.add("CHECKPOINT", {"agent": "executor", "cursor": 3})
    assert view.turn_message is None and view.turn_ts is None


def test_a_killed_hosts_question_goes_with_its_turn() -> None:
    log = Log()
    log.add("AGENT_SPAWNED", {"agent": "executor", "role": "executor"}, actor="swarm")
    log.add("TURN_STARTED", {"agent": "executor", "message": 3, "backend": "claude",
                             "prompt_sha256": SHA})
    log.add("PERMISSION_REQUESTED", asked("r1"))
    view = log.ledger.agents["executor"]
    log.add("TURN_STARTED", {"agent": "executor", "message": 3, "attempt": 2,
                             "backend": "claude", "prompt_sha256": SHA, "recovering": True})
    assert (view.state, view.asking, view.turn_attempt) == ("working", {}, 2)
    log.add("PERMISSION_REQUESTED", asked("r3"))
    log.add("AGENT_CANCELLED", {"agent": "executor", "message": 3, "how": "sigint"},
            actor="swarm")
    assert (view.state, view.asking) == ("cancelled", {})
    assert "restart" in view.detail


def test_queued_and_stalled() -> None:
    log = Log()
    log.add("AGENT_SPAWNED", {"agent": "executor", "role": "executor"}, actor="swarm")
    log.add("AGENT_QUEUED", {"agent": "executor", "backend": "claude", "running": 2,
                             "cap": 2}, actor="swarm")
    view = log.ledger.agents["executor"]
    assert view.state == "queued" and "claude slot (2/2 busy)" in view.detail
    log.add("TURN_STARTED", {"agent": "executor", "message": 3, "backend": "claude",
                             "prompt_sha256": SHA})
    log.add("AGENT_STALLED", {"agent": "executor", "message": 3, "silent_s": 300.0},
            actor="swarm")
    assert (view.state, view.detail) == ("stalled", "no output for 300s")
    log.add("AGENT_OUTPUT", {"agent": "executor", "message": 3, "sequence": 0,
                             "kind": "tool_call", "data": {"name": "Read"}})
    assert view.state == "working"  # it spoke again


def test_a_failed_agent_has_no_turn_to_cancel_but_one_to_restart() -> None:
    log = Log()
    log.add("AGENT_SPAWNED", {"agent": "executor", "role": "executor"}, actor="swarm")
    log.add("TURN_STARTED", {"agent": "executor", "message": 3, "backend": "claude",
                             "prompt_sha256": SHA})
    log.add("PERMISSION_REQUESTED", asked("r1"))
    assert log.ledger.refusal("cancel", "executor") is None
    log.add("AGENT_FAILED", {"agent": "executor", "error": "claude: 401", "message": 3})
    view = log.ledger.agents["executor"]
    assert (view.state, view.asking, view.turn_message, view.turn_ts) == (
        "failed", {}, None, None)
    refused = log.ledger.refusal("cancel", "executor")
    assert refused is not None and "no turn running" in refused
    assert log.ledger.refusal("restart", "executor") is None
