"""The story lines of supervising real agents: a permission asked and answered, a turn
started (and redone), queued, stalled, cancelled, a budget; each checked against the
event registry, so the lines describe payloads that can be in the log."""

from __future__ import annotations

from typing import Any

import pytest

from sisyphus_tui.events import encode_payload
from sisyphus_tui.narrative import line, summary
from sisyphus_tui.stream.base import Event

SHA = "a" * 64


def event(type_: str, payload: dict[str, Any], actor: str = "executor") -> Event:
    encode_payload(type_, payload)  # (a payload the log would refuse tells no story)
    return Event(7, type_, actor, None, payload, 1_700_000_000.0, None)


@pytest.mark.parametrize(("type_", "payload", "actor", "said"), [
    ("PERMISSION_REQUESTED", {"agent": "executor", "request": "r1~ab", "tool": "Bash",
                              "input": {"command": "pytest -q\nrm -rf x"}},
     "executor", "asks to use Bash: pytest -q … rm -rf x"),
    ("PERMISSION_REQUESTED", {"agent": "executor", "request": "r1", "tool": "WebFetch",
                              "input": {}, "timeout_s": 30, "on_timeout": "allow"},
     "executor", "asks to use WebFetch (allow if unanswered in 30s)"),
    ("PERMISSION_ANSWERED", {"agent": "executor", "request": "r1", "decision": "allow",
                             "always": True}, "human",
     "executor's request allowed by human for the rest of the run"),
    ("PERMISSION_ANSWERED", {"agent": "executor", "request": "r1", "decision": "deny",
                             "message": "use pytest -x", "by": "timeout"}, "executor",
     "executor's request denied by the timeout: use pytest -x"),
    ("TURN_STARTED", {"agent": "executor", "message": 12, "backend": "claude",
                      "prompt_sha256": SHA}, "executor",
     "turn on message 12 (claude, new session)"),
    ("TURN_STARTED", {"agent": "executor", "message": 12, "backend": "claude", "attempt": 2,
                      "prompt_sha256": SHA, "session": "s-1", "recovering": True},
     "executor", "turn on message 12 (claude, resuming s-1, attempt 2, redone after an "
                 "interruption)"),
    ("AGENT_QUEUED", {"agent": "validator", "backend": "codex", "running": 1, "cap": 1},
     "swarm", "validator queued: codex runs 1 of 1"),
    ("AGENT_STALLED", {"agent": "executor", "silent_s": 301.4}, "swarm",
     "executor stalled: no output for 301s"),
    ("AGENT_CANCELLED", {"agent": "executor", "message": 12, "how": "sigkill"}, "swarm",
     "executor's turn cancelled (sigkill)"),
    ("AGENT_CANCELLED", {"agent": "executor"}, "swarm",
     "executor's turn cancelled (before any process ran)"),
    ("BUDGET", {"level": "warn", "spent_usd": 4.0, "limit_usd": 5.0}, "swarm",
     "the run's budget: $4.00 of $5.00 spent (80%)"),
    ("BUDGET", {"level": "exceeded", "agent": "planner", "spent_usd": 1.02,
                "limit_usd": 1.0}, "swarm", "planner's budget is spent ($1.02 of $1.00): paused"),
    ("BUDGET", {"level": "warn", "spent_usd": 0.0041, "limit_usd": 0.005}, "swarm",
     "the run's budget: $0.0041 of $0.0050 spent (80%)"),
])
def test_each_new_event_tells_its_story(type_: str, payload: dict[str, Any], actor: str,
                                        said: str) -> None:
    assert summary(event(type_, payload, actor)) == said
    assert line(event(type_, payload, actor)) == f"[7] {actor}: {said}"
