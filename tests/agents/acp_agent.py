"""A small ACP agent for the ACP backend's tests, written with the SDK's agent side.

``python acp_agent.py --mode MODE --store DIR``. On a prompt it streams what a coding
agent does: a thought, a message, a ``read`` tool call served by the client's
``fs/read_text_file``, an ``edit`` tool call it asks ``session/request_permission`` for
and writes through ``fs/write_text_file``, a usage update, a closing message, and
``stopReason`` ``end_turn`` with the turn's usage. Sessions are kept in ``--store``
(one JSON file each), so another process can ``session/load`` them.

Modes: ``edit`` (the above), ``outside`` (it tries to write outside the workspace),
``hang`` (it waits until cancelled, then returns ``cancelled``), ``stubborn`` (it
ignores cancel and SIGINT, and leaves a child process in its group), ``exit`` (it
exits 3 at start), ``garbage`` (stray lines on stdout, an unknown update type and a
line over the client's bound, then ``edit``), ``error`` (the prompt fails with a
JSON-RPC error), ``auth`` (session/new needs authentication).

Options of the ``edit`` turn: ``--stop REASON`` (the stop reason it ends with),
``--edit-title TITLE`` (what it calls the edit), ``--edit-kind KIND`` (the kind it
gives it), ``--no-locations`` (the edit's call names no file), ``--unasked`` (it
writes through ``fs/write_text_file`` without asking first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    RequestError,
    run_agent,
    start_edit_tool_call,
    start_read_tool_call,
    tool_diff_content,
    update_agent_message_text,
    update_agent_thought_text,
    update_tool_call,
    update_user_message_text,
)
from acp.interfaces import Client
from acp.schema import (
    AgentCapabilities,
    AllowedOutcome,
    Implementation,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    ToolCallStart,
    Usage,
    UsageUpdate,
)


class TestAgent:
    """The agent: behaviour chosen by ``--mode``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store = Path(args.store)
        self.conn: Client | None = None
        self.cancelled: dict[str, asyncio.Event] = {}
        self.cwd: dict[str, str] = {}

    def on_connect(self, conn: Client) -> None:
        self.conn = conn

    def _file(self, session_id: str) -> Path:
        return self.store / f"{session_id}.json"

    def _history(self, session_id: str) -> list[dict[str, str]]:
        path = self._file(session_id)
        return json.loads(path.read_text()) if path.exists() else []

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(load_session=True),
            agent_info=Implementation(name="acp-test-agent", version="1.0"))

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        if self.args.mode == "auth":
            raise RequestError.auth_required({"details": "log in first"})
        session_id = f"sess-{uuid.uuid4().hex[:8]}"
        self.cwd[session_id] = cwd
        self._file(session_id).write_text("[]")
        return NewSessionResponse(session_id=session_id)

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any,
                           ) -> LoadSessionResponse:
        if not self._file(session_id).exists():
            raise RequestError.resource_not_found(session_id)
        self.cwd[session_id] = cwd
        assert self.conn is not None
        for turn in self._history(session_id):  # the spec: replay the conversation
            await self.conn.session_update(session_id, update_user_message_text(turn["user"]))
            await self.conn.session_update(session_id,
                                           update_agent_message_text(turn["agent"]))
        return LoadSessionResponse()

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        if self.args.mode != "stubborn":
            self.cancelled.setdefault(session_id, asyncio.Event()).set()

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any,
                     ) -> PromptResponse:
        assert self.conn is not None
        conn = self.conn
        text = "".join(getattr(block, "text", "") for block in prompt)
        history = self._history(session_id)
        cancelled = self.cancelled.setdefault(session_id, asyncio.Event())
        say = lambda update: conn.session_update(session_id, update)  # noqa: E731
        if self.args.mode == "error":
            raise RequestError(-32603, "model failed", {"details": "HTTP 500 from model"})
        if self.args.mode in ("hang", "stubborn"):
            await say(update_agent_message_text("working..."))
            if self.args.mode == "stubborn":
                child = await asyncio.create_subprocess_exec("sleep", "300")  # our group
                _write(self.args.pids, f"{os.getpid()} {child.pid}")
                await asyncio.Event().wait()  # forever, cancel or not
            else:
                _write(self.args.pids, str(os.getpid()))
                await cancelled.wait()
            return PromptResponse(stop_reason="cancelled")
        cwd = Path(self.cwd.get(session_id, os.getcwd()))
        await say(update_agent_thought_text("I should read "))
        await say(update_agent_thought_text("the input first."))
        await say(update_agent_message_text("Reading "))
        await say(update_agent_message_text("input.txt."))
        source = str(cwd / "input.txt")
        await say(start_read_tool_call("read-1", "Read input.txt", source))
        read = await conn.read_text_file(session_id=session_id, path=source)
        await say(update_tool_call("read-1", status="completed", raw_output=read.content))
        target = str(cwd.parent / "outside.txt" if self.args.mode == "outside"
                     else cwd / "output.txt")
        new = read.content.upper()
        if self.args.no_locations:
            await say(ToolCallStart(session_update="tool_call", tool_call_id="edit-1",
                                    title=self.args.edit_title, kind=self.args.edit_kind,
                                    status="pending"))
        else:
            start = start_edit_tool_call("edit-1", self.args.edit_title, target, new)
            start.kind = self.args.edit_kind
            await say(start)
        if self.args.unasked:
            allowed = True
        else:
            answer = await conn.request_permission(
                session_id=session_id, tool_call=update_tool_call("edit-1"),
                options=[PermissionOption(option_id="yes", name="Allow", kind="allow_once"),
                         PermissionOption(option_id="no", name="Reject",
                                          kind="reject_once")])
            outcome = answer.outcome
            allowed = isinstance(outcome, AllowedOutcome) and outcome.option_id == "yes"
        if allowed:
            try:
                await conn.write_text_file(session_id=session_id, path=target, content=new)
            except RequestError as exc:
                await say(update_tool_call("edit-1", status="failed", raw_output=str(exc)))
            else:
                await say(update_tool_call("edit-1", status="completed",
                                           content=[tool_diff_content(target, new)]))
        else:
            await say(update_tool_call("edit-1", status="failed", raw_output="rejected"))
        await say(UsageUpdate(session_update="usage_update", used=1500, size=200000))
        earlier = "; ".join(turn["user"] for turn in history)
        reply = f"Done (turn {len(history) + 1}" + (f", earlier: {earlier}" if earlier else "")
        await say(update_agent_message_text(reply + ")."))
        history.append({"user": text, "agent": reply})
        self._file(session_id).write_text(json.dumps(history))
        return PromptResponse(stop_reason=self.args.stop, usage=Usage(
            total_tokens=170, input_tokens=120, output_tokens=30, cached_read_tokens=20))


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def _garbage(limit: int) -> None:
    """What a misbehaving agent may print on stdout before it speaks ACP."""
    out = sys.stdout.buffer
    out.write(b"Loading agent... not JSON at all\n")
    out.write(b'{"hello": "a JSON object that is no JSON-RPC message"}\n')
    out.write(json.dumps({"jsonrpc": "2.0", "method": "session/update", "params": {
        "sessionId": "x", "update": {"sessionUpdate": "brand_new_thing", "v": 1}}}).encode()
        + b"\n")
    out.write(b'{"jsonrpc": "2.0", "method": "session/update", "params": {"x": "'
              + b"y" * limit + b'"}}\n')
    out.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="edit")
    parser.add_argument("--store", default=".")
    parser.add_argument("--pids", default="pids.txt")
    parser.add_argument("--huge", type=int, default=17 << 20)
    parser.add_argument("--stop", default="end_turn")
    parser.add_argument("--edit-title", default="Write output")
    parser.add_argument("--edit-kind", default="edit")
    parser.add_argument("--no-locations", action="store_true")
    parser.add_argument("--unasked", action="store_true")
    args = parser.parse_args()
    if args.mode == "exit":
        print("acp-test-agent: cannot start: bad configuration", file=sys.stderr)
        sys.exit(3)
    if args.mode == "stubborn":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.mode == "garbage":
        _garbage(args.huge)
        args.mode = "edit"
    asyncio.run(run_agent(TestAgent(args)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
