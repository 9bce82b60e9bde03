"""While an agent's turn runs, its status is not committed yet (it goes with the turn):
its live output says what it is doing, in every view of the ledger (the TUI's agents
pane, ``sisyphus agents``)."""

from __future__ import annotations

from typing import Any

from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream.base import Event


def event(offset: int, type_: str, payload: dict[str, Any], actor: str = "planner") -> Event:
    return Event(offset=offset, type=type_, actor=actor, to=None, payload=payload, ts=1.0,
                 key=None)


def output(offset: int, kind: str, text: str = "", **data: Any) -> Event:
    return event(offset, "AGENT_OUTPUT", {"agent": "planner", "message": 2, "sequence": offset,
                                          "kind": kind, "text": text, "data": data})


def test_live_output_is_the_agents_state_until_its_turn_commits() -> None:
    ledger = Ledger()
    ledger.apply(event(1, "AGENT_SPAWNED", {"agent": "planner", "role": "planner",
                                            "brain": "claude"}, actor="kernel"))
    ledger.apply(output(3, "session", session_id="s-1"))
    ledger.apply(output(4, "tool_call", name="Read", input={"file_path": "/r/calc.py"}))
    view = ledger.agents["planner"]
    assert (view.state, view.detail, view.session) == ("working", "tool_call: Read", "s-1")
    ledger.apply(output(5, "text", "The plan:\n\x1b[31mone step"))
    assert view.detail == "text: The plan: \x1b[31mone step"  # one line; views escape it
    ledger.apply(output(6, "usage", input_tokens=10))  # bookkeeping: not what it does
    assert view.detail == "text: The plan: \x1b[31mone step"
    ledger.apply(event(7, "STATUS_UPDATE", {"agent": "planner", "state": "idle",
                                            "detail": "plan-1 written"}))
    assert (view.state, view.detail) == ("idle", "plan-1 written")
