"""Run one coding agent on one prompt: start its CLI in the workspace (its own process
group), read its stdout as bounded JSON lines, hand each normalised event on as it
comes, write back what the protocol needs (permission answers), and end it: when the
turn is over, on timeout, or on cancel, with the protocol's cancel first, then SIGINT,
then SIGKILL of the whole group, each after a grace period."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sisyphus_tui.agents.base import (
    RAW_MAX_CHARS,
    AgentEvent,
    AgentRequest,
    AgentUnavailable,
    Backend,
    Question,
)
from sisyphus_tui.process import Child, Tail, end_leftover, note_group
from sisyphus_tui.safe_text import printable

EventHandler = Callable[[AgentEvent], Awaitable[None] | None]
LINGER_S = 2.0  # how long a CLI may take to exit on its own once its turn is over
RUNNING_FILE = "running.json"  # in the agent's folder: the process group it runs


# What says an agent's failure may pass if its turn is tried again (the model is
# overloaded or rate-limited, the connection dropped, the turn timed out, the CLI was
# killed), and what says it will not (no key, no login, a bad flag or model): the latter
# wins, and anything neither names is not retried.
_PASSING = re.compile(
    r"\b(?:408|409|425|429|500|502|503|504|520|522|524|529)\b|overloaded|rate.?limit|"
    r"too many requests|high demand|timed out|timeout|temporar|unavailable|try again|"
    r"connection (?:refused|reset|closed|error)|econnrefused|econnreset|unable to connect|"
    r"fetch failed|waiting for network|network error|stream disconnected|socket hang up|"
    r"exited with -\d+|ended without finishing", re.IGNORECASE)
_FINAL = re.compile(
    r"\b(?:400|401|403|404)\b|unauthori[sz]ed|forbidden|api.?key|not logged in|/login|"
    r"authenticat|invalid auth|unexpected argument|unknown (?:option|argument|arguments|"
    r"model|flag)|model .{0,40}not found|not installed|no conversation found|"
    r"session not found", re.IGNORECASE)


@dataclass(frozen=True)
class AgentResult:
    """How one agent run ended."""

    backend: str
    exit_code: int
    session: str | None = None
    text: str = ""  # the final answer
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    stderr_tail: str = ""
    events: int = 0

    @property
    def ok(self) -> bool:
        """It finished its turn, with no error."""
        return self.error is None and not self.timed_out and self.stop_reason is not None

    @property
    def passing(self) -> bool:
        """Whether its failure may pass if the turn is tried again (an overloaded
        model, a dropped connection, a timeout) rather than say something about the
        setup (no key, a bad flag: retrying would only fail again)."""
        if self.ok:
            return False
        text = self.error or ""
        if _FINAL.search(text):
            return False
        return self.timed_out or bool(_PASSING.search(text))


# A CLI's colours on stderr (opencode colours its errors even on a pipe): dropped
# from the one-line error, not shown as escapes.
_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def asks(event: AgentEvent) -> bool:
    """Whether ``event`` is a permission request no rule decided (one for a person)."""
    return event.kind == "permission" and event.data.get("decision") == "ask"


async def settle(event: AgentEvent, request: AgentRequest) -> AgentEvent:
    """A permission request no rule decided (``asks``) put to the request's asker (a
    person, through the log): the event with the answer in it; with no asker, the tool
    is denied. Any other event is returned as it is."""
    if not asks(event):
        return event
    if request.ask is None:
        return replace(event, data={**event.data, "decision": "deny",
                                    "reason": "not allowed (nobody to ask)"})
    data = event.data
    tool_input = data.get("input")
    kind = data.get("kind")
    answer = await request.ask(Question(
        str(data.get("id") or ""), str(data.get("name") or "?"),
        tool_input if isinstance(tool_input, dict) else {"input": tool_input},
        str(data.get("reason") or event.text or ""),
        kind if isinstance(kind, str) and kind and kind != "other" else None))
    who = {"human": "a person", "timeout": "the timeout", "policy": "the policy"}.get(
        answer.by, answer.by)
    why = f"{'allowed' if answer.decision == 'allow' else 'denied'} by {who}" + (
        " (always, for this run)" if answer.always else "")
    return replace(event, data={**data, "decision": answer.decision, "reason": why,
                                "asked": True, "by": answer.by, "always": answer.always,
                                "message": answer.message})


def _last_line(text: str) -> str:
    text = _COLOURS.sub("", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return printable(lines[-1])[:300] if lines else ""


async def run_agent(backend: Backend, request: AgentRequest,
                    on_event: EventHandler | None = None) -> AgentResult:
    """Run ``request`` on ``backend``; ``on_event`` gets each event as it happens
    (awaited: the next line waits for it). AgentUnavailable if the CLI cannot start."""
    start = time.perf_counter()
    own = await backend.session(request, on_event or (lambda event: None))
    if own is not None:
        return own
    executable = backend.executable(request)
    await backend.prepare(request)  # its files written, its state read, off the loop
    argv = [executable, *request.command[1:], *backend.argv(request)]
    env = {**os.environ, **backend.environment(request), **request.env}
    group_file = request.state_dir / RUNNING_FILE if request.state_dir else None
    if group_file is not None:
        # What a killed host left running for this agent goes before it starts again.
        await asyncio.to_thread(end_leftover, group_file)
    try:
        child = await Child.start(argv, request.workspace, env=env, stdin=backend.stdin,
                                  merge_stderr=False, die_with_parent=True)
    except OSError as exc:
        raise AgentUnavailable(f"{backend.name}: cannot run {executable!r}: "
                               f"{exc.strerror}") from None
    if group_file is not None:
        await asyncio.to_thread(note_group, group_file, child.pid)
    parser = backend.parser_for(request)
    stderr = Tail(4000)
    stderr_head: list[str] = []  # its first lines: an error a long usage text follows
    over = asyncio.Event()
    count = 0
    # The time spent on a person's answers does not count against the turn's.
    waited_s = 0.0
    waiting_since: float | None = None

    def limit() -> float:
        now = time.monotonic()
        return deadline + waited_s + (now - waiting_since if waiting_since else 0.0)

    async def say(event: AgentEvent) -> None:
        nonlocal count
        count += 1
        if on_event is not None:
            result = on_event(event)
            if inspect.isawaitable(result):
                await result

    async def pump() -> None:
        nonlocal waited_s, waiting_since
        async for line in child.lines():
            for index, event in enumerate(parser.feed(line)):
                if index == 0 and event.raw is None:
                    event = replace(event, raw=line[:RAW_MAX_CHARS])
                if asks(event):
                    waiting_since = time.monotonic()
                    try:
                        event = await settle(event, request)
                    finally:
                        waited_s += time.monotonic() - waiting_since
                        waiting_since = None
                await say(event)
                answer = backend.reply(event, request)
                if answer is not None:
                    await child.write(answer)
                if backend.done(event):
                    over.set()
                    if backend.close_stdin_when_done:
                        child.close_stdin()

    async def drain_stderr() -> None:
        async for line in child.lines(stderr=True):
            stderr.add(line)
            if len(stderr_head) < 10:
                stderr_head.append(line[:1000])

    async def cancel() -> None:
        steps: list[tuple[int, float]] = [(signal.SIGINT, request.grace_s)]
        interrupt = backend.interrupt()
        # (Its stdin closed, a CLI cannot read the protocol's cancel: straight to SIGINT.)
        if interrupt is not None and child.returncode is None and await child.write(
                interrupt) and await child.exited(request.grace_s):
            return
        await child.stop(steps)

    reader = asyncio.create_task(pump())
    errors = asyncio.create_task(drain_stderr())
    exited = asyncio.create_task(child.exited())
    finished = asyncio.create_task(over.wait())
    timed_out = False

    async def feed() -> None:
        first = backend.first_input(request)
        if first is not None:
            await child.write(first)
            if backend.close_stdin_after_input:
                child.close_stdin()

    try:
        # The prompt is written within the turn's time (a CLI that never reads its
        # stdin must not hold the run past its timeout).
        deadline = time.monotonic() + request.timeout_s
        feeding = asyncio.create_task(feed())
        watched: set[asyncio.Task[Any]] = {feeding, reader, exited, finished}
        done: set[asyncio.Task[Any]] = set()
        while not done and time.monotonic() < limit():
            # (while a person is asked, the limit moves with the clock: a second's wait
            # at least, never a spin when the question came at the deadline itself)
            left = limit() - time.monotonic()
            done, _ = await asyncio.wait(watched, timeout=max(left, 1.0) if waiting_since
                                         else left, return_when=asyncio.FIRST_COMPLETED)
            if feeding in done:  # the prompt is in: now the turn itself
                watched.discard(feeding)
                done.discard(feeding)
        if not feeding.done():
            feeding.cancel()
        if not done:
            timed_out = True
            await cancel()
        elif reader in done and reader.exception() is not None:
            await cancel()  # the log cannot take its events: it is asked to stop first
        elif finished in done or exited in done or reader in done:
            # The turn is over, or the CLI ended: let it (and its output) finish.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), LINGER_S)
            if not await child.exited(LINGER_S):
                await cancel()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(reader), LINGER_S)
    except BaseException:  # cancelled: ask it to stop, then make it
        await asyncio.shield(cancel())
        raise
    finally:
        for task in (finished, exited):
            task.cancel()
        await child.close()
        if group_file is not None:
            group_file.unlink(missing_ok=True)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(errors, 1.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    if reader.done() and not reader.cancelled() and reader.exception() is not None:
        raise reader.exception()  # type: ignore[misc]  # (on_event's own error)
    code = child.returncode if child.returncode is not None else -1
    error = parser.error
    if timed_out:
        error = f"{backend.name} timed out after {request.timeout_s:g}s"
    elif code != 0 and parser.stop_reason is None and error is None:
        chosen = backend.exit_line("\n".join(stderr_head) + "\n" + stderr.text())
        said = printable(chosen.strip())[:300] if chosen else _last_line(stderr.text())
        error = f"{backend.name} exited with {code}" + (f": {said}" if said else "")
    elif parser.stop_reason is None and error is None:
        error = f"{backend.name} ended without finishing its turn"
    if error is not None and error != parser.error:
        await say(AgentEvent("error", error, {"exit_code": code}))
    return AgentResult(backend.name, code, parser.session, parser.answer(),
                       parser.stop_reason, parser.usage, error, timed_out,
                       time.perf_counter() - start, stderr.text(), count)


ACTED = ("text", "thinking", "tool_call", "tool_result", "permission")
# How the CLIs say a session to resume is not there (claude "No conversation found with
# session ID", opencode "Session not found", gemini "No previous sessions found", codex
# "no rollout found for thread id").
_MISSING_SESSION = re.compile(
    r"no conversation found|session not found|no (?:previous )?sessions? found|"
    r"no (?:rollout|thread)s? found|"
    r"(?:thread|session|conversation|rollout)\b.{0,80}\b(?:not found|does not exist|"
    r"no such|unknown|missing)|unknown (?:session|thread)|could not (?:find|load) "
    r"(?:the )?(?:session|thread)", re.IGNORECASE)


def session_missing(result: AgentResult) -> bool:
    """Whether a run failed because the session it was to resume is not there."""
    return bool(result.error and _MISSING_SESSION.search(result.error))


async def run_resuming(backend: Backend, request: AgentRequest,
                       on_event: EventHandler | None = None) -> AgentResult:
    """``run_agent``; and if resuming ``request.session`` failed, before the agent did
    anything, because that session is not there (another HOME, a cleared store, a host
    killed before the CLI saved it), once more in a new session, saying so in an
    ``error`` event. A run is never stuck on a session that cannot come back; any other
    failure is returned as it is (its session kept for the next try)."""
    acted = False

    async def say(event: AgentEvent) -> None:
        nonlocal acted
        acted = acted or event.kind in ACTED
        if on_event is not None:
            result = on_event(event)
            if inspect.isawaitable(result):
                await result

    result = await run_agent(backend, request, say)
    if request.session is None or result.ok or acted or not session_missing(result):
        return result  # (an overloaded model on resume is no reason to lose the context)
    await say(AgentEvent("error", f"could not resume session {request.session} "
                                  f"({result.error}): starting a new session",
                         {"session_id": request.session, "resumed": False}))
    prompt = await request.fresh_prompt() if request.fresh_prompt else request.prompt
    return await run_agent(backend, replace(request, session=None, prompt=prompt,
                                            fresh_prompt=None), on_event)
