"""Permission prompts answered from the supervisor, through the log.

An agent's tool call that no rule decides (``Permissions.decide`` says ``ask``) is put
to a person: ``ask`` appends PERMISSION_REQUESTED (the agent shows ``needs input``) and
waits for the PERMISSION_ANSWERED of that request, whichever process appends it (a TUI,
a second TUI over SSH, ``sisyphus answer`` in any shell). The answer is keyed by the
request, so the first one wins and a second is a no-op; the policy's timeout answers
the same way, so a person who answers at the same instant either wins or is told the
timeout did.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sisyphus_tui.agents.base import Answer, Question
from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream.base import Event, EventStore

REQUESTED = "PERMISSION_REQUESTED"
ANSWERED = "PERMISSION_ANSWERED"
DECISIONS = ("allow", "deny")
MESSAGE_MAX = 2000  # what a deny may say to the agent


def answer_key(agent: str, request: str) -> str:
    """The idempotency key of the answer to ``request``: one answer per request."""
    return f"answer:{agent}:{request}"


@dataclass(frozen=True)
class Policy:
    """What happens to a question nobody answers: after ``timeout_s`` (None: it waits
    until answered) the answer is ``on_timeout``."""

    timeout_s: float | None = None
    on_timeout: str = "deny"


def request_id(backend_id: str) -> str:
    """A request id unique in the log: the backend's own (a redone turn may reuse it)
    with a random suffix, so an old answer never answers a new question."""
    return f"{backend_id[:150] or 'ask'}~{secrets.token_hex(4)}"


def _answer_of(event: Event) -> Answer:
    p = event.payload
    return Answer(str(p.get("decision")), bool(p.get("always")), str(p.get("message") or ""),
                  str(p.get("by") or "human"))


async def ask(store: EventStore, agent: str, question: Question, *, message: int | None,
              policy: Policy = Policy(), always: Collection[str] = ()) -> Answer:
    """Put ``question`` to a person and wait for the answer (or the policy's, once its
    timeout passes). A tool a person allowed ``always`` for this run is allowed at once.
    Cancelled, it leaves the request unanswered in the log (the next attempt asks anew)."""
    if (question.kind or question.tool) in always:
        return Answer("allow", always=True, by="policy")
    request = request_id(question.request)
    head = await store.append(REQUESTED, {
        "agent": agent, "request": request, "message": message, "tool": question.tool,
        "kind": question.kind, "input": question.input, "reason": question.reason[:1000],
        "timeout_s": policy.timeout_s, "on_timeout": policy.on_timeout},
        actor=agent, key=f"permission:{agent}:{request}")
    try:
        found = await asyncio.wait_for(_answered(store, agent, request, head),
                                       policy.timeout_s)
    except TimeoutError:
        offset = await store.append(ANSWERED, {
            "agent": agent, "request": request, "decision": policy.on_timeout,
            "by": "timeout", "message": f"no answer within {policy.timeout_s:g}s"},
            actor=agent, key=answer_key(agent, request))
        (found,) = await store.read_offsets([offset])  # a person's, if it came first
    return _answer_of(found)


async def _answered(store: EventStore, agent: str, request: str, after: int) -> Event:
    async for event in store.tail(after + 1, types=[ANSWERED]):
        if event.payload.get("agent") == agent and event.payload.get("request") == request:
            return event
    raise AssertionError("unreachable: a tail never ends")


def pending(ledger: Ledger) -> list[tuple[str, str, dict[str, Any]]]:
    """Every permission request waiting for an answer: (agent, request, its payload
    with ``ts``), oldest first."""
    waiting = [(name, request, asked) for name, view in ledger.agents.items()
               for request, asked in view.asking.items()]
    return sorted(waiting, key=lambda item: float(item[2].get("ts") or 0.0))


async def answer(store: EventStore, agent: str, decision: str, *,
                 request: str | None = None, always: bool = False, message: str = "",
                 actor: str = "human", ledger: Ledger | None = None) -> int:
    """Answer ``agent``'s permission request (``request``; None: its oldest waiting)
    with ``decision``; returns the answer's offset. SisyphusError (one line) when the
    decision is not allow/deny, the agent has nothing waiting, or the request was
    answered already (by whom and how)."""
    if decision not in DECISIONS:
        raise SisyphusError(f"the answer is allow or deny, not {decision!r}")
    if ledger is None:
        ledger = await permission_ledger(store)
    view = ledger.agents.get(agent)
    if view is None:
        raise SisyphusError(f"no agent named {agent!r} in this log")
    if request is None:
        if not view.asking:
            raise SisyphusError(f"{agent} is not waiting for a permission answer")
        request = min(view.asking, key=lambda r: float(view.asking[r].get("ts") or 0.0))
    elif request not in view.asking:
        raise SisyphusError(f"{agent} has no permission request {request!r} waiting")
    offset = await store.append(ANSWERED, {
        "agent": agent, "request": request, "decision": decision,
        "always": always and decision == "allow", "message": message[:MESSAGE_MAX],
        "by": "human"}, actor=actor, key=answer_key(agent, request))
    (first,) = await store.read_offsets([offset])  # (the key's first answer wins)
    if first.payload.get("by") == "human" and first.payload.get("decision") == decision:
        return offset
    raise SisyphusError(f"{agent}'s request {request} was answered already "
                        f"({first.payload.get('decision')} by {first.payload.get('by')}, "
                        f"event {offset})")


async def permission_ledger(store: EventStore) -> Ledger:
    """A ledger of what the permission questions need (agents, their requests and
    answers, their turns): cheaper than the whole log."""
    ledger = Ledger()
    offset = 0
    types = ["AGENT_SPAWNED", "AGENT_REGISTERED", REQUESTED, ANSWERED, "TURN_STARTED",
             "CHECKPOINT", "AGENT_CANCELLED", "AGENT_FAILED"]
    while True:
        page = await store.read(offset, 5000, types=types)
        for event in page.events:
            ledger.apply(event)
        if not page.events:
            return ledger
        offset = page.next_offset
