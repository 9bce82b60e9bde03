"""One real agent on one prompt, every event into the log (``sisyphus agent``).

The agent is spawned in the log once (AGENT_SPAWNED with its brain, keyed by name); the
prompt is a task MESSAGE to it; what it streams is AGENT_OUTPUT keyed by (agent, that
message, sequence), appended as it comes, so a TUI on the same database shows it live.
The end is one commit: the agent's status, and its cursor past the prompt. Run again
with the same name after the process was killed, it resumes the backend session the
log last recorded for it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sisyphus_tui import permissions
from sisyphus_tui.agents import backend as make_backend
from sisyphus_tui.agents.base import (
    AgentEvent,
    AgentRequest,
    Answer,
    Backend,
    Permissions,
    Question,
    subject_of,
)
from sisyphus_tui.agents.config import BrainConfig, Price, agent_folder
from sisyphus_tui.agents.runner import AgentResult, run_resuming
from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.ledger import AgentView, Ledger
from sisyphus_tui.mail import SwarmMail, registration_key
from sisyphus_tui.safe_text import printable
from sisyphus_tui.shadow import Shadow, ShadowError
from sisyphus_tui.stream.base import EventStore, NewEvent
from sisyphus_tui.usage import account

ROLE = "agent"


async def agent_view(store: EventStore, name: str) -> AgentView | None:
    """``name`` as the log describes it (its role, brain, last backend session)."""
    ledger = Ledger()
    offset = 0
    while True:
        page = await store.read(offset, 5000, types=[
            "AGENT_SPAWNED", "AGENT_REGISTERED", "AGENT_OUTPUT", "CONTEXT_WIPED",
            "PERMISSION_REQUESTED", "PERMISSION_ANSWERED", "CHECKPOINT"])
        for event in page.events:
            ledger.apply(event)
        if not page.events:
            break
        offset = page.next_offset
    return ledger.agents.get(name)


async def run_solo(store: EventStore, config: BrainConfig, prompt: str, workspace: Path,
                   name: str, *, on_event: Callable[[AgentEvent], None] | None = None,
                   prices: Mapping[str, Price] | None = None) -> AgentResult:
    """Run ``prompt`` on the agent ``name`` (spawned with ``config`` if new), in
    ``workspace`` (an absolute, resolved path); returns how it ended
    (AgentUnavailable if it cannot start)."""
    backend = make_backend(config.backend)
    mail = SwarmMail(store)
    known = await agent_view(store, name)
    if known is not None and known.role not in (ROLE, "-"):
        raise SisyphusError(f"{name!r} is this swarm's {known.role}: give the agent "
                            "another --name")
    if known is not None and known.brain not in (None, config.backend):
        raise SisyphusError(f"{name!r} runs on {known.brain}, not {config.backend}: give "
                            "the agent another --name")
    folder = await asyncio.to_thread(agent_folder, workspace, name)
    lock = await asyncio.to_thread(_hold, folder / "running.lock", name)
    try:
        return await _run(store, mail, backend, config, prompt, workspace, name, known,
                          folder, on_event, prices)
    finally:
        os.close(lock)


def _hold(path: Path, name: str) -> int:
    """An exclusive lock on ``path`` for this run (one run of an agent at a time: two
    would resume one session twice), or SisyphusError naming what holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise SisyphusError(f"agent {name!r} is already running here (pid {holder}): wait "
                            "for it, or give this one another --name") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


async def _run(store: EventStore, mail: SwarmMail, backend: Backend, config: BrainConfig,
               prompt: str, workspace: Path, name: str, known: AgentView | None,
               folder: Path, on_event: Callable[[AgentEvent], None] | None,
               prices: Mapping[str, Price] | None = None) -> AgentResult:
    """The run itself, its lock held."""
    await store.append_many([
        {"type": "AGENT_SPAWNED", "actor": "human", "key": f"spawn:{name}",
         "payload": {"agent": name, "role": ROLE, "skill": None, "parent": None,
                     "thinking": config.thinking or "off", "brain": config.backend,
                     "brain_config": config.record()}},
        {"type": "AGENT_REGISTERED", "actor": name, "key": registration_key(name),
         "payload": {"agent": name, "role": ROLE}},
    ])
    session = known.session if known is not None else None
    if known is not None and known.asking:
        # What a run of it killed while it waited asked is not asked any more: closed,
        # so an answer meant for this run never goes to that one.
        await store.append_many([NewEvent.of("PERMISSION_ANSWERED", {
            "agent": name, "request": request, "decision": "deny", "by": "policy",
            "message": "the run that asked ended before an answer"}, actor=name,
            key=permissions.answer_key(name, request)) for request in known.asking])
    message = await store.append("MESSAGE", {"kind": "task", "text": prompt, "data": {}},
                                 actor="human", to=name)
    sequence = 0

    async def said(event: AgentEvent) -> None:
        nonlocal sequence
        await store.append("AGENT_OUTPUT", {
            "agent": name, "message": message, "sequence": sequence, "kind": event.kind,
            "text": event.text, "raw": event.raw,
            # (usage accounted as it is appended: the price table's estimate where the
            # backend gives tokens but no cost)
            "data": account(config.backend, event.data, model=config.model, prices=prices)
            if event.kind == "usage" else event.data},
            actor=name, key=f"output:{name}:{message}:{sequence}")
        sequence += 1
        if on_event is not None:
            on_event(event)

    await store.append("STATUS_UPDATE", {"agent": name, "state": "working",
                                         "detail": f"{config.backend}: {prompt[:80]}"},
                       actor=name)
    always: set[str] = set()  # what a person allowed for the rest of this run

    async def ask(question: Question) -> Answer:
        # The person running this command is told at once (the log and any TUI on it
        # say so too): the run waits for the answer.
        subject = subject_of(question.input) or ""
        bell = "\a" if sys.stderr.isatty() else ""
        print(printable(f"{name} asks to use {question.tool}"
                        + (f": {' '.join(subject.split())[:200]}" if subject else "")),
              file=sys.stderr)
        print(printable(f"  answer it: sisyphus answer {name} allow|deny --db "
                        f"{store.location}") + bell, file=sys.stderr, flush=True)
        answer = await permissions.ask(
            store, name, question, message=message,
            policy=permissions.Policy(config.ask_timeout_s, config.on_timeout),
            always=always)
        if answer.always and answer.decision == "allow":
            always.add(question.kind or question.tool)
        return answer

    request = AgentRequest(
        prompt=prompt, workspace=workspace, session=session, model=config.model,
        thinking=config.thinking or "off",
        permissions=Permissions(config.allow, config.deny, config.ask), args=config.args,
        env=dict(config.env), command=config.command,
        state_dir=folder, timeout_s=config.timeout_s, ask=ask)
    try:
        result = await run_resuming(backend, request, said)
    except BaseException as exc:
        # Interrupted (or unable to start): on the record, the prompt left pending.
        why = str(exc) if isinstance(exc, SisyphusError) else (
            f"{type(exc).__name__}: {exc}" if str(exc) else "interrupted")
        await _close(store, mail, name, message, None, why, workspace)
        raise
    await _close(store, mail, name, message, result, result.error, workspace)
    return result


async def _snapshot(workspace: Path, label: str) -> str | None:
    """The workspace as the agent left it, in the shadow repository (``sisyphus
    restore``); None, said on stderr, when it cannot be taken (no git here)."""
    try:
        return await Shadow(workspace).snapshot(label)
    except ShadowError as exc:
        print(printable(f"sisyphus: no workspace checkpoint: {exc}"), file=sys.stderr)
        return None


async def _close(store: EventStore, mail: SwarmMail, name: str, message: int,
                 result: AgentResult | None, error: str | None, workspace: Path) -> None:
    events: list[NewEvent | dict[str, Any]] = []
    if result is not None and result.ok:
        snapshot = await _snapshot(workspace, f"{name}@{message}")
        events.append(NewEvent.of("STATUS_UPDATE", {
            "agent": name, "state": "done",
            "detail": (result.text.strip().splitlines() or ["finished"])[0][:200]},
            actor=name))
        events.append(NewEvent.of("CHECKPOINT", {
            "agent": name, "cursor": message, "step": None,
            "state": {"session": result.session}, "workspace": snapshot}, actor=name))
        await mail.ack(name, message, events=events)
        return
    await store.append("AGENT_FAILED", {"agent": name, "error": (error or "failed")[:1000],
                                        "message": message}, actor=name)
