"""Any agent that speaks the Agent Client Protocol (ACP: JSON-RPC 2.0 over the agent's
stdin and stdout), e.g. ``opencode acp`` or ``gemini --acp``, through the official SDK
(``agent-client-protocol``, import ``acp``).

ACP is a conversation, not a stream of lines: this backend runs the whole request in
``Backend.session``: start the command (``request.command``) in its own process group,
``initialize``, ``session/new`` in the workspace (or ``session/resume`` /
``session/load`` of ``request.session`` when the agent advertises them), one
``session/prompt``, and every ``session/update`` turned into normalised events. The
client side answers ``session/request_permission`` with ``Permissions`` and serves
``fs/read_text_file`` / ``fs/write_text_file`` confined to the workspace; it offers no
terminal. A permission is decided by the call's ``kind`` (the agent's ``title`` can
only add to what is allowed, never escape a deny): an ``edit`` is allowed when every
file it names is inside the workspace (one that names none is denied); a read-only
request denies edit, delete and move, and every ``fs/write_text_file``. A cancel
sends ``session/cancel`` first, then SIGINT, then SIGKILL of the
group, each after ``request.grace_s``.

The SDK reads the agent's stdout through a message transport of our own
(``_ChildTransport``): each line is bounded by ``process.Child``, and a line that is not
a JSON-RPC message, or a ``session/update`` the SDK's schema does not know, becomes a
``raw`` event instead of a log line or a dropped message.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, cast

from acp import PROTOCOL_VERSION, Client, RequestError, connect_to_agent
from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AgentThoughtChunk,
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    FileSystemCapabilities,
    Implementation,
    InitializeResponse,
    PermissionOption,
    PromptResponse,
    ReadTextFileResponse,
    RequestPermissionResponse,
    SessionNotification,
    TextContentBlock,
    ToolCallProgress,
    ToolCallStart,
    ToolCallUpdate,
    UsageUpdate,
    UserMessageChunk,
    WriteTextFileResponse,
)
from pydantic import BaseModel, ValidationError

from sisyphus_tui.agents.base import (
    RAW_MAX_CHARS,
    TEXT_MAX_CHARS,
    AgentEvent,
    AgentRequest,
    AgentUnavailable,
    Backend,
    Parser,
    bounded,
    truncated_event,
)
from sisyphus_tui.agents.runner import LINGER_S, AgentResult, asks, settle
from sisyphus_tui.process import Child, Tail
from sisyphus_tui.safe_text import printable

EventHandler = Callable[[AgentEvent], Awaitable[None] | None]
# A JSON-RPC message may carry a whole file (fs/write_text_file): a line is allowed
# far more than the runner's 1 MiB, and is still bounded.
MAX_MESSAGE_BYTES = 16 << 20
EDIT_KINDS = ("edit",)  # ACP tool kinds that edit files: allowed inside the workspace
# ACP tool kinds that change files: denied in a read-only request.
WRITE_KINDS = ("edit", "delete", "move")
CLIENT_INFO = Implementation(name="sisyphus-tui", title="sisyphus-tui", version="0.1")


class AcpParser(Parser):
    """Unused for lines (ACP is no stream of them): it says which stop reasons are
    normal (``end_turn`` only: not ``max_tokens``, ``max_turn_requests``, ``refusal``,
    ``cancelled``)."""

    name: ClassVar[str] = "acp"
    NORMAL_STOPS: ClassVar[frozenset[str]] = frozenset({"end_turn"})


class AcpBackend(Backend):
    """An ACP agent started from ``request.command`` (``("opencode", "acp")``)."""

    name = "acp"
    binary = ""
    package = "an ACP agent, e.g. opencode (`opencode acp`) or Gemini CLI (`gemini --acp`)"
    stdin = True

    def executable(self, request: AgentRequest) -> str:
        """The command's first word, found on PATH (AgentUnavailable if there is no
        command or it is not found)."""
        if not request.command or not request.command[0]:
            raise AgentUnavailable("acp: no agent command given (the ACP backend needs "
                                   "one, e.g. ('opencode', 'acp') or ('gemini', '--acp'))")
        return super().executable(request)

    def argv(self, request: AgentRequest) -> list[str]:
        """The agent's command line: the command, then the request's extra args."""
        return [self.executable(request), *request.command[1:], *request.args]

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """Telemetry, update checks and auto-updates off for the ACP agents we know
        (each variable is ignored by the others)."""
        return {
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "GEMINI_TELEMETRY_ENABLED": "false",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }

    def parser(self) -> Parser:
        """Unused (ACP is no stream of lines): its stop reasons' parser."""
        return AcpParser()

    async def session(self, request: AgentRequest, on_event: EventHandler,
                      ) -> AgentResult | None:
        """The whole ACP conversation for ``request`` (AgentUnavailable if the command
        cannot be started)."""
        argv = self.argv(request)
        env = {**os.environ, **self.environment(request), **request.env}
        try:
            child = await Child.start(argv, request.workspace, env=env, stdin=True,
                                      merge_stderr=False, max_line_bytes=MAX_MESSAGE_BYTES,
                                      die_with_parent=True)
        except OSError as exc:
            raise AgentUnavailable(f"acp: cannot run {argv[0]!r}: {exc.strerror}") from None
        run = _Run(request, child, on_event)
        return await run.run()


@dataclass
class _Tool:
    """What is known of one tool call so far (updates only carry what changed)."""

    title: str = ""
    kind: str | None = None
    input: Any = None
    locations: list[str] = field(default_factory=list)
    done: bool = False


class _ChildTransport:
    """The SDK's message transport over the child's pipes: stdout lines in (each one
    JSON-RPC message; anything else is reported as ``raw``), messages out on stdin."""

    def __init__(self, child: Child, run: _Run) -> None:
        self._child = child
        self._run = run
        self._lines = child.lines()

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message as a line to the agent's stdin."""
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        if not await self._child.write(data):
            raise ConnectionError("the agent no longer reads its input")

    async def receive(self) -> dict[str, Any] | None:
        """The next JSON-RPC message from the agent; None once its stdout ends."""
        while (line := await anext(self._lines, None)) is not None:
            message = self._run.incoming(line)
            if message is not None:
                return message
        return None

    async def close(self) -> None:
        """Nothing to do: the child's pipes are closed with the child."""


class _Client:
    """The client side the agent calls (the SDK routes each request here)."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        """One ``session/update``: events, in the order they came (nothing here
        awaits before the event is queued)."""
        self._run.update(update)

    async def request_permission(self, session_id: str, tool_call: ToolCallUpdate,
                                 options: list[PermissionOption], **kwargs: Any,
                                 ) -> RequestPermissionResponse:
        """Allowed or denied per the request's permissions (edits in the workspace
        always allowed)."""
        return await self._run.permission(tool_call, options)

    async def read_text_file(self, session_id: str, path: str, line: int | None = None,
                             limit: int | None = None, **kwargs: Any,
                             ) -> ReadTextFileResponse:
        """A text file inside the workspace (empty if it does not exist yet)."""
        return await self._run.read_file(path, line, limit)

    async def write_text_file(self, session_id: str, path: str, content: str,
                              **kwargs: Any) -> WriteTextFileResponse | None:
        """Write a text file inside the workspace."""
        return await self._run.write_file(path, content)

    async def create_terminal(self, session_id: str, command: str, **kwargs: Any) -> Any:
        """Refused: this client offers no terminal (it said so in initialize)."""
        raise RequestError(-32601, "terminal/create is not offered by this client")

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """An extension request: not supported."""
        raise RequestError.method_not_found(f"_{method}")

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        """An extension notification: shown as raw."""
        self._run.emit(AgentEvent("raw", f"_{method}", {"reason": "extension notification"},
                                  raw=_dump(params)))


class _Run:
    """One request's conversation with one agent process, and what it said so far."""

    def __init__(self, request: AgentRequest, child: Child, on_event: EventHandler) -> None:
        self.request = request
        self.child = child
        self.on_event = on_event
        self.root = request.workspace.resolve()
        self.stderr = Tail(4000)
        self.queue: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
        self.count = 0
        self.session_id: str | None = None
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.usage: dict[str, Any] = {}
        self.texts: list[str] = []
        self.tools: dict[str, _Tool] = {}
        self.phase = "initialize"  # the request in flight, for the error line
        self.replaying = False  # session/load replays the history: not this run's events
        self.replayed = 0
        self.cancelling = False  # our session/cancel sent: "cancelled" is its answer
        self.asking = False  # a permission request waits for a person
        self.waited_s = 0.0  # ... and the time people took, not the turn's
        self._message: list[str] = []
        self._message_id: str | None = None
        self._thought: list[str] = []
        self._start = time.perf_counter()

    # -- events -------------------------------------------------------------------

    def emit(self, event: AgentEvent) -> None:
        """Queue an event for ``on_event`` (delivered in order by one task)."""
        if event.kind == "text" and event.text:
            self.texts.append(event.text)
        self.queue.put_nowait(event)

    async def _deliver(self) -> None:
        while (event := await self.queue.get()) is not None:
            self.count += 1
            result = self.on_event(event)
            if inspect.isawaitable(result):
                await result

    def flush(self) -> None:
        """Emit the message and thought text gathered so far, each as one event."""
        if self._thought:
            self.emit(AgentEvent("thinking", "".join(self._thought)))
            self._thought = []
        if self._message:
            self.emit(AgentEvent("text", "".join(self._message)))
            self._message = []

    def incoming(self, line: str) -> dict[str, Any] | None:
        """One stdout line: the JSON-RPC message it holds, or None (reported raw)."""
        stripped = line.strip()
        if not stripped:
            return None
        cut = truncated_event(stripped)
        if cut is not None:
            self.emit(replace(cut, raw=stripped[:RAW_MAX_CHARS]))
            return None
        try:
            message = json.loads(stripped)
        except ValueError:
            self.emit(AgentEvent("raw", stripped[:TEXT_MAX_CHARS], {"reason": "not JSON"},
                                 raw=stripped[:RAW_MAX_CHARS]))
            return None
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            self.emit(AgentEvent("raw", stripped[:TEXT_MAX_CHARS],
                                 {"reason": "not a JSON-RPC message"},
                                 raw=stripped[:RAW_MAX_CHARS]))
            return None
        if message.get("method") == "session/update" and "id" not in message:
            # The SDK would only log an update its schema does not know: say it.
            try:
                SessionNotification.model_validate(message.get("params"))
            except ValidationError:
                params = message.get("params")
                update = params.get("update") if isinstance(params, dict) else None
                kind = update.get("sessionUpdate") if isinstance(update, dict) else None
                self.emit(AgentEvent("raw", str(kind or "?")[:200],
                                     {"reason": f"unknown session update {kind!r}"},
                                     raw=stripped[:RAW_MAX_CHARS]))
                return None
        return message

    def update(self, update: Any) -> None:
        """Translate one validated ``session/update``."""
        raw = _dump(update)
        if self.replaying:
            self.replayed += 1
            return
        if isinstance(update, AgentMessageChunk):
            if self._thought:
                self.flush()
            if update.message_id != self._message_id and self._message:
                self.flush()
            self._message_id = update.message_id
            if isinstance(update.content, TextContentBlock):
                self._message.append(update.content.text)
            else:
                self.emit(AgentEvent("raw", update.content.type,
                                     {"reason": "non-text message content"}, raw=raw))
        elif isinstance(update, AgentThoughtChunk):
            if self._message:
                self.flush()
            if isinstance(update.content, TextContentBlock):
                self._thought.append(update.content.text)
        elif isinstance(update, UserMessageChunk):
            pass  # the prompt echoed back
        elif isinstance(update, ToolCallStart):
            self.flush()
            self._tool_call(update, raw)
            self._tool_status(update.tool_call_id, update, raw)
        elif isinstance(update, ToolCallProgress):
            self.flush()
            tool = self.tools.get(update.tool_call_id) or self._tool_call(update, raw)
            tool.title = update.title or tool.title
            tool.kind = update.kind or tool.kind
            if update.raw_input is not None:
                tool.input = update.raw_input
            if update.locations:
                tool.locations = [loc.path for loc in update.locations]
            if not self._tool_status(update.tool_call_id, update, raw):
                self.emit(AgentEvent("raw", f"{tool.title}: {update.status or 'update'}",
                                     {"reason": "tool_call_update",
                                      "id": update.tool_call_id}, raw=raw))
        elif isinstance(update, AgentPlanUpdate):
            self.flush()
            plan = "; ".join(f"[{entry.status}] {entry.content}" for entry in update.entries)
            self.emit(AgentEvent("raw", bounded(f"plan: {plan}"), {"reason": "plan"}, raw=raw))
        elif isinstance(update, UsageUpdate):
            data: dict[str, Any] = {"context_used": update.used, "context_size": update.size}
            if update.cost is not None:
                data["cost"] = update.cost.amount
                data["currency"] = update.cost.currency
                if update.cost.currency.upper() == "USD":
                    data["cost_usd"] = update.cost.amount
            self.usage.update(data)
            self.emit(AgentEvent("usage", "", data, raw=raw))
        else:
            kind = getattr(update, "session_update", type(update).__name__)
            self.emit(AgentEvent("raw", str(kind), {"reason": f"session update {kind}"},
                                 raw=raw))

    def _tool_call(self, call: ToolCallStart | ToolCallUpdate, raw: str) -> _Tool:
        """A ``tool_call`` event for a call first seen (as a ``tool_call`` update, or
        only in a permission request: Gemini sends a write's call no other way). Its
        input is the agent's ``rawInput``, else what its locations and diff say."""
        tool = _Tool(call.title or "", call.kind, call.raw_input,
                     [loc.path for loc in call.locations or []])
        if tool.input is None:
            tool.input = _derived_input(call)
        self.tools[call.tool_call_id] = tool
        self.emit(AgentEvent("tool_call", tool.title,
                             {"id": call.tool_call_id, "name": tool.title, "kind": tool.kind,
                              "input": tool.input, "locations": tool.locations,
                              "status": call.status}, raw=raw))
        return tool

    def _tool_status(self, tool_id: str, update: ToolCallStart | ToolCallProgress,
                     raw: str) -> bool:
        """A ``tool_result`` once the call is completed or failed (True if emitted)."""
        tool = self.tools[tool_id]
        if update.status not in ("completed", "failed") or tool.done:
            return False
        tool.done = True
        self.emit(AgentEvent("tool_result", bounded(_tool_output(update)),
                             {"id": tool_id, "name": tool.title, "kind": tool.kind,
                              "is_error": update.status == "failed"}, raw=raw))
        return True

    # -- what the agent asks of the client ----------------------------------------------

    async def permission(self, tool_call: ToolCallUpdate,
                         options: list[PermissionOption]) -> RequestPermissionResponse:
        """Decide (or, when no rule does, ask the request's asker: a person), say so in
        a ``permission`` event, and answer with the option that matches the decision
        (or ``cancelled`` when none does)."""
        self.flush()
        known = self.tools.get(tool_call.tool_call_id)
        if known is None:
            known = self._tool_call(tool_call, _dump(tool_call))
        title = tool_call.title or known.title
        kind = tool_call.kind or known.kind or "other"
        tool_input = tool_call.raw_input if tool_call.raw_input is not None else known.input
        paths = [loc.path for loc in tool_call.locations or []] or known.locations
        decision, reason = self.decide(title, kind, paths, tool_input)
        event = AgentEvent("permission", title,
                           {"id": tool_call.tool_call_id, "name": title, "kind": kind,
                            "input": tool_input, "decision": decision, "reason": reason},
                           raw=_dump(tool_call))
        if asks(event):
            self.asking = True  # (a person's time is not the turn's)
            started = time.monotonic()
            try:
                event = await settle(event, self.request)
            finally:
                self.asking = False
                self.waited_s += time.monotonic() - started
        self.emit(event)
        decision = str(event.data["decision"])
        wanted = ("allow_once", "allow_always") if decision == "allow" else (
            "reject_once", "reject_always")
        if event.data.get("always") and decision == "allow":
            wanted = ("allow_always", "allow_once")  # (a person allowed it for the run)
        for option_kind in wanted:
            for option in options:
                if option.kind == option_kind:
                    return RequestPermissionResponse(outcome=AllowedOutcome(
                        outcome="selected", option_id=option.option_id))
        return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))

    def decide(self, title: str, kind: str, paths: list[str],
               tool_input: Any) -> tuple[str, str]:
        """The decision on a permission request, and why. By ``kind``, which the agent
        cannot rename its way out of: a deny by kind is final; an edit is allowed only
        with named paths all inside the workspace (and never in a read-only request);
        otherwise the kind, or the agent-chosen title, must be allowed (the title only
        adds to what is allowed, a deny of it still holds)."""
        perms = self.request.permissions
        args = tool_input if isinstance(tool_input, dict) else None
        if perms.denies(kind, args) or (title and perms.denies(title, args)):
            return "deny", "denied by the configuration"
        if kind in WRITE_KINDS and self.request.read_only:
            return "deny", "read-only: no edits"
        if kind in EDIT_KINDS:
            if not paths:
                return "deny", "an edit that names no file"
            outside = [p for p in paths if self.confined(p) is None]
            if outside:
                return "deny", f"outside the workspace: {outside[0]}"
            return "allow", "an edit inside the workspace"
        if any(perms.asks(name, args) for name in (kind, title) if name):
            return "ask", ""  # (an ask rule of either name wins over an allow)
        if "allow" in (perms.decide(kind, args), perms.decide(title, args)):
            return "allow", "allowed by the configuration"
        return "ask", ""

    def confined(self, path: str) -> Path | None:
        """``path`` resolved, if it is inside the workspace; else None."""
        target = Path(path)
        if not target.is_absolute():
            target = self.root / target
        resolved = target.resolve()
        return resolved if resolved.is_relative_to(self.root) else None

    def _refuse(self, method: str, path: str,
                reason: str = "outside the workspace") -> RequestError:
        self.flush()
        self.emit(AgentEvent("permission", method,
                             {"name": method, "input": {"path": path}, "decision": "deny",
                              "reason": reason}))
        if reason != "outside the workspace":
            return RequestError(-32602, f"{method}: {path}: {reason}")
        return RequestError(-32602, f"{method}: {path} is outside the workspace {self.root}")

    async def read_file(self, path: str, line: int | None,
                        limit: int | None) -> ReadTextFileResponse:
        """The file's text (lines ``line``.. , at most ``limit``), off the event loop.
        A missing file inside the workspace reads as empty: Gemini over ACP cannot
        create a new file when this answers the spec's not-found error."""
        target = self.confined(path)
        if target is None:
            raise self._refuse("fs/read_text_file", path)

        def read() -> str:
            try:
                text = target.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return ""
            except OSError as exc:
                raise RequestError(-32603, f"fs/read_text_file: {path}: {exc.strerror}",
                                   ) from None
            if line is None and limit is None:
                return text
            lines = text.splitlines(keepends=True)
            first = max((line or 1) - 1, 0)
            last = first + limit if limit is not None else len(lines)
            return "".join(lines[first:last])

        return ReadTextFileResponse(content=await asyncio.to_thread(read))

    async def write_file(self, path: str, content: str) -> WriteTextFileResponse:
        """Write the file (its folders made), off the event loop; refused outside the
        workspace, and always in a read-only request."""
        if self.request.read_only:
            raise self._refuse("fs/write_text_file", path, "read-only: no edits")
        target = self.confined(path)
        if target is None:
            raise self._refuse("fs/write_text_file", path)

        def write() -> None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
            except OSError as exc:
                raise RequestError(-32603, f"fs/write_text_file: {path}: {exc.strerror}",
                                   ) from None

        await asyncio.to_thread(write)
        return WriteTextFileResponse()

    # -- the conversation ---------------------------------------------------------------

    async def run(self) -> AgentResult:
        """Talk to the agent until the turn ends, the time is up, or the caller
        cancels; the process group is gone when this returns."""
        request = self.request
        deliver = asyncio.create_task(self._deliver())
        errors = asyncio.create_task(self._drain_stderr())
        # _Client implements what this client offers; the SDK answers the rest
        # (terminals, elicitation) as not offered.
        client = cast(Client, _Client(self))
        conn = connect_to_agent(client, _ChildTransport(self.child, self))
        talk = asyncio.create_task(self._talk(conn))
        timed_out = False
        try:
            deadline = time.monotonic() + request.timeout_s
            done: set[asyncio.Task[Any]] = set()
            # (The time a person takes to answer does not count against the turn's.)
            while not done and (self.asking or time.monotonic() < deadline + self.waited_s):
                left = deadline + self.waited_s - time.monotonic()
                done, _ = await asyncio.wait({talk}, timeout=max(left, 1.0) if self.asking
                                             else max(left, 0.0))
            if not done:
                timed_out = True
                await self._cancel(conn, talk)
            else:
                await self._linger()
        except BaseException:  # cancelled: the protocol's cancel, then the signals
            await asyncio.shield(self._cancel(conn, talk))
            deliver.cancel()
            raise
        finally:
            if not talk.done():
                talk.cancel()
                with contextlib.suppress(BaseException):
                    await talk
            with contextlib.suppress(Exception):
                await conn.close()
            await self.child.close()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(errors, 1.0)
            self.flush()
        code = self.child.returncode if self.child.returncode is not None else -1
        if timed_out:
            self.error = f"acp timed out after {request.timeout_s:g}s"
        elif self.error is None and self.stop_reason is None:
            self.error = self._ended(code)
        if self.error is not None:
            self.emit(AgentEvent("error", self.error, {"exit_code": code,
                                                       "phase": self.phase}))
        self.queue.put_nowait(None)
        await deliver  # on_event's own error is raised here
        return AgentResult("acp", code, self.session_id, self.texts[-1] if self.texts else "",
                           self.stop_reason, self.usage, self.error, timed_out,
                           time.perf_counter() - self._start, self.stderr.text(), self.count)

    async def _drain_stderr(self) -> None:
        async for line in self.child.lines(stderr=True):
            self.stderr.add(line)

    async def _linger(self) -> None:
        """The turn is over: end the agent's input; it should exit on its own."""
        self.child.close_stdin()
        if not await self.child.exited(LINGER_S):
            await self.child.stop([(signal.SIGINT, self.request.grace_s)])

    async def _cancel(self, conn: Any, talk: asyncio.Task[None]) -> None:
        """``session/cancel`` (the prompt should return, ``cancelled``), then SIGINT,
        then SIGKILL of the group, ``grace_s`` apart."""
        grace = self.request.grace_s
        self.cancelling = True
        if self.session_id is not None and self.phase == "session/prompt" and not talk.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.cancel(session_id=self.session_id), grace)
            await asyncio.wait({talk}, timeout=grace)
            if talk.done():
                self.child.close_stdin()
                if await self.child.exited(min(grace, LINGER_S)):
                    return
        await self.child.stop([(signal.SIGINT, grace)])

    def _ended(self, code: int) -> str:
        said = _last_line(self.stderr.text())
        if self.child.returncode is not None:
            what = f"the agent exited with {code} during {self.phase}"
        else:
            what = f"the agent closed its output during {self.phase}"
        return f"acp: {what}" + (f": {said}" if said else "")

    async def _talk(self, conn: Any) -> None:
        """initialize, the session, the prompt; an error ends as one line."""
        try:
            await self._conversation(conn)
        except RequestError as exc:
            self.error = _rpc_error(self.phase, exc)
        except ConnectionError:
            # The agent is gone (or stopped reading): its exit code says more.
            await self.child.exited(1.0)
            self.error = self._ended(self.child.returncode or -1)
        except ValidationError as exc:
            problems = exc.errors()
            where = ".".join(str(part) for part in problems[0]["loc"]) if problems else "?"
            what = problems[0]["msg"] if problems else str(exc)
            self.error = f"acp: unreadable answer to {self.phase}: {where}: {what}"

    async def _conversation(self, conn: Any) -> None:
        request = self.request
        init: InitializeResponse = await conn.initialize(
            protocol_version=PROTOCOL_VERSION,
            client_capabilities=ClientCapabilities(
                fs=FileSystemCapabilities(read_text_file=True, write_text_file=True),
                terminal=False),
            client_info=CLIENT_INFO)
        caps = init.agent_capabilities
        agent = init.agent_info
        info = {"agent": agent.name if agent else None,
                "agent_version": agent.version if agent else None}
        cwd = str(self.root)
        note = ""
        session_id: str | None = None
        if request.session:
            can_resume = caps is not None and caps.session_capabilities is not None and (
                caps.session_capabilities.resume is not None)
            can_load = caps is not None and bool(caps.load_session)
            try:
                if can_resume:
                    self.phase = "session/resume"
                    await conn.resume_session(session_id=request.session, cwd=cwd)
                    session_id = request.session
                elif can_load:
                    self.phase = "session/load"
                    self.replaying = True
                    try:
                        await conn.load_session(session_id=request.session, cwd=cwd)
                    finally:
                        self.replaying = False
                    session_id = request.session
                else:
                    note = (f"the agent cannot resume a session (no session/load or "
                            f"session/resume): session {request.session} not resumed, "
                            f"a new one started")
            except RequestError as exc:
                note = (f"{_rpc_error(self.phase, exc)} (session {request.session}): "
                        f"a new session started")
        if session_id is None:
            self.phase = "session/new"
            new = await conn.new_session(cwd=cwd, mcp_servers=[])
            session_id = new.session_id
            options = new.config_options
        else:
            options = None
        self.session_id = session_id
        self.emit(AgentEvent("session", note, {
            "session_id": session_id, "resumed": session_id == request.session,
            **({"replayed": self.replayed} if self.replayed else {}), **info}))
        if request.model:
            await self._choose_model(conn, session_id, options)
        self.phase = "session/prompt"
        response: PromptResponse = await conn.prompt(
            session_id=session_id, prompt=[TextContentBlock(type="text",
                                                            text=self._prompt_text())])
        self.flush()
        data = _prompt_usage(response)
        if data:
            self.usage.update(data)
            self.emit(AgentEvent("usage", "", dict(self.usage),
                                 raw=_dump(response.usage or response.field_meta)))
        self.stop_reason = response.stop_reason
        if not self.cancelling and self.error is None and \
                not AcpParser().normal_stop(response.stop_reason):
            # max_tokens, max_turn_requests, refusal, or a cancel we did not send.
            self.error = f"acp stopped: {response.stop_reason}"
        self.emit(AgentEvent("finished", self.texts[-1] if self.texts else "",
                             {"stop_reason": response.stop_reason}, raw=_dump(response)))

    async def _choose_model(self, conn: Any, session_id: str, options: Any) -> None:
        """The request's model, through the session's ``model`` config option when the
        agent offers one; else said in a raw event (ACP has no other way)."""
        for option in options or []:
            if getattr(option, "category", None) == "model":
                self.phase = "session/set_config_option"
                await conn.set_config_option(config_id=option.id, session_id=session_id,
                                             value=self.request.model)
                return
        self.emit(AgentEvent("raw", f"model {self.request.model!r} not set",
                             {"reason": "the agent offers no model option"}))

    def _prompt_text(self) -> str:
        """ACP has no system prompt: instructions go first, the schema last."""
        request = self.request
        parts = []
        if request.instructions:
            parts.append(f"<instructions>\n{request.instructions}\n</instructions>")
        parts.append(request.prompt)
        if request.schema is not None:
            parts.append("Your final message must be only a JSON value (no other text) "
                         "that fits this JSON schema:\n" + json.dumps(request.schema))
        return "\n\n".join(parts)


def _dump(obj: Any) -> str:
    """A message's JSON, bounded like every raw line."""
    try:
        if isinstance(obj, BaseModel):
            text = obj.model_dump_json(by_alias=True, exclude_none=True)
        else:
            text = json.dumps(obj)
    except (TypeError, ValueError):
        text = repr(obj)
    return text[:RAW_MAX_CHARS]


def _derived_input(call: ToolCallStart | ToolCallUpdate) -> dict[str, Any] | None:
    """A tool call's input when the agent sends no ``rawInput``: its path(s), and the
    new text of a diff."""
    paths = [loc.path for loc in call.locations or []]
    derived: dict[str, Any] = {}
    if paths:
        derived["path"] = paths[0]
        if len(paths) > 1:
            derived["paths"] = paths
    for item in call.content or []:
        if item.type == "diff":
            derived.setdefault("path", item.path)
            derived["content"] = item.new_text
            if item.old_text:
                derived["old_text"] = item.old_text
            break
    return derived or None


def _prompt_usage(response: PromptResponse) -> dict[str, Any]:
    """The turn's tokens: the (unstable) ``usage`` of the prompt's answer, else
    Gemini's ``_meta.quota.token_count``."""
    used = response.usage
    if used is not None:
        data: dict[str, Any] = {"input_tokens": used.input_tokens,
                                "output_tokens": used.output_tokens,
                                "cached_tokens": used.cached_read_tokens or 0,
                                "total_tokens": used.total_tokens}
        if used.thought_tokens is not None:
            data["thought_tokens"] = used.thought_tokens
        return data
    meta = response.field_meta or {}
    quota = meta.get("quota") if isinstance(meta, dict) else None
    count = quota.get("token_count") if isinstance(quota, dict) else None
    if not isinstance(count, dict):
        return {}
    data = {key: count[key] for key in ("input_tokens", "output_tokens")
            if isinstance(count.get(key), int)}
    if data:
        data.setdefault("cached_tokens", 0)
    return data


def _tool_output(update: ToolCallStart | ToolCallProgress) -> str:
    """A tool result's text: its content blocks, else its raw output."""
    parts: list[str] = []
    for item in update.content or []:
        if item.type == "content" and isinstance(item.content, TextContentBlock):
            parts.append(item.content.text)
        elif item.type == "diff":
            parts.append(f"{item.path}:\n{item.new_text}")
        elif item.type == "terminal":
            parts.append(f"[terminal {item.terminal_id}]")
    if not parts and update.raw_output is not None:
        output = update.raw_output
        parts.append(output if isinstance(output, str) else _dump(output))
    return "\n".join(parts)


def _rpc_error(phase: str, exc: RequestError) -> str:
    """A JSON-RPC error as one line, naming the request and an auth failure as such."""
    detail = ""
    if isinstance(exc.data, dict):
        detail = str(exc.data.get("details") or exc.data.get("message") or "")
    elif exc.data is not None:
        detail = str(exc.data)
    what = "authentication required" if exc.code == -32000 else _api_error(str(exc))
    line = f"acp: {phase} failed: {what}" + (f": {detail}" if detail and detail != what else "")
    return printable(" ".join(line.split()))[:500]


def _api_error(message: str) -> str:
    """An agent that passes its model API's error body on as the message (Gemini):
    its status and message, not the JSON."""
    try:
        body = json.loads(message)
    except ValueError:
        return message
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not error.get("message"):
        return message
    code = error.get("code") or error.get("status")
    return f"model API error {code}: {error['message']}" if code else str(error["message"])


TELLING = re.compile(r"error|unknown|invalid|not found|cannot|can't|failed|denied",
                     re.IGNORECASE)


def _last_line(text: str) -> str:
    """The stderr line that says what went wrong: the last that names an error (a CLI
    may print its whole usage after the line about the bad flag), else the last."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = [line for line in lines if TELLING.search(line)]
    chosen = telling[-1] if telling else lines[-1] if lines else ""
    return printable(chosen)[:300]
