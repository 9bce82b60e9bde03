"""Claude Code (``claude``, npm ``@anthropic-ai/claude-code``) run headless: ``claude -p``
with stream-json on both sides, so the prompt, the permission answers and the interrupt
all go through its stdin, and every message comes back as one JSON line on stdout.

What it prints, one JSON object a line (2.1.197; key order not relied on):
- ``system`` ``init``: ``session_id``, ``model``, ``cwd``, ``tools``, ``permissionMode``;
  other ``system`` subtypes (``thinking_tokens``, retries, hooks) are shown raw.
- ``assistant``: one line per content block (``text``, ``thinking``, ``tool_use``); a
  failed API call is a synthetic assistant message with a top-level ``error`` and the
  error in its text. Its ``message.usage`` is the call's start, not a total: not used.
- ``user``: ``tool_result`` blocks (the tool's output, ``is_error``).
- ``control_request`` ``can_use_tool`` (with ``--permission-prompt-tool stdio``): the
  CLI waits for our ``control_response`` allow/deny on stdin.
- ``result``: the turn is over: ``is_error`` (a failed run may still say ``subtype:
  "success"``), ``result`` (the answer, or the error), ``structured_output`` (with
  ``--json-schema``), ``usage`` summed over the run's model calls, ``total_cost_usd``.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, ClassVar

from sisyphus_tui.agents.base import (
    AgentEvent,
    AgentRequest,
    Backend,
    Parser,
    Permissions,
    bounded,
)

EFFORTS = ("low", "medium", "high", "xhigh", "max")  # --effort's choices
# The swarm's thinking modes: "off" turns Claude's thinking off (MAX_THINKING_TOKENS=0
# makes the request say thinking "disabled"); the others set its effort.
THINKING_EFFORT = {"think": "high", "ultrathink": "max"}
# Unless the user says otherwise: a permanent HTTP 500 is retried for over 75 s by
# default; two retries fail it in a few seconds.
DEFAULT_MAX_RETRIES = "2"
QUIET = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}
# The tools that change files: refused in a read-only request whatever the permissions.
EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})


def _blocks_text(content: Any) -> str:
    """A tool result's or message's content as text (a string, or text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                else:
                    parts.append(f"[{block.get('type', '?')}]")
        return "\n".join(parts)
    return "" if content is None else json.dumps(content)


def _tool_of(rule: str) -> str:
    """The tool a permission entry names (``Bash(pytest*)`` -> ``Bash``)."""
    return rule.split("(", 1)[0].strip()


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat[:limit]


class ClaudeParser(Parser):
    """Claude Code's stream-json lines as normalised events; a permission request is
    decided here (``permissions``) so its event says what was answered."""

    name: ClassVar[str] = "claude"
    # The model's stop reasons of a turn that ended well (max_tokens, refusal,
    # pause_turn, model_context_window_exceeded did not).
    NORMAL_STOPS: ClassVar[frozenset[str]] = frozenset(
        {"end_turn", "stop_sequence", "tool_use"})

    def __init__(self, permissions: Permissions | None = None,
                 read_only: bool = False) -> None:
        super().__init__()
        self.permissions = permissions or Permissions()
        self.read_only = read_only

    def read(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """The events of one decoded line (unknown types and subtypes: ``raw``)."""
        kind = obj.get("type")
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._user(obj)
        if kind == "control_request":
            return self._control_request(obj)
        if kind == "result":
            return self._result(obj)
        return super().read(obj)

    def _system(self, obj: dict[str, Any]) -> list[AgentEvent]:
        if obj.get("subtype") != "init":
            return [AgentEvent("raw", "", {"reason": f"system {obj.get('subtype')!s}"})]
        return [AgentEvent("session", "", {
            "session_id": obj["session_id"], "model": obj.get("model"),
            "cwd": obj.get("cwd"), "permission_mode": obj.get("permissionMode"),
            "version": obj.get("claude_code_version")})]

    def _assistant(self, obj: dict[str, Any]) -> list[AgentEvent]:
        message = obj["message"]
        content = message.get("content") or []
        parent = obj.get("parent_tool_use_id")  # set inside a subagent's turn
        if obj.get("error"):
            # A failed API call, told as a synthetic assistant message.
            said = _one_line(_blocks_text(content)) or str(obj["error"])
            return [AgentEvent("error", f"claude: {said}", {"code": obj["error"]})]
        events: list[AgentEvent] = []
        for block in content:
            btype = block.get("type")
            if btype == "text":
                events.append(AgentEvent("text", str(block.get("text", "")),
                                         {"parent": parent} if parent else {}))
            elif btype == "thinking":
                events.append(AgentEvent("thinking", str(block.get("thinking", ""))))
            elif btype == "redacted_thinking":
                events.append(AgentEvent("thinking", "[redacted]"))
            elif btype in ("tool_use", "server_tool_use"):
                events.append(AgentEvent("tool_call", "", {
                    "name": block["name"], "input": block.get("input") or {},
                    "id": block.get("id"), **({"parent": parent} if parent else {})}))
            else:
                events.append(AgentEvent("raw", "", {"reason": f"assistant {btype!s}"}))
        return events

    def _user(self, obj: dict[str, Any]) -> list[AgentEvent]:
        content = obj["message"].get("content")
        if not isinstance(content, list):
            return [AgentEvent("raw", bounded(_blocks_text(content)),
                               {"reason": "user message"})]
        events: list[AgentEvent] = []
        for block in content:
            if block.get("type") == "tool_result":
                events.append(AgentEvent("tool_result",
                                         bounded(_blocks_text(block.get("content"))),
                                         {"id": block.get("tool_use_id"),
                                          "is_error": bool(block.get("is_error"))}))
            else:
                # The CLI's own notes to the model ("[Request interrupted by user]").
                events.append(AgentEvent("raw", bounded(_blocks_text([block])),
                                         {"reason": "user message"}))
        return events

    def _control_request(self, obj: dict[str, Any]) -> list[AgentEvent]:
        request = obj["request"]
        request_id = obj["request_id"]
        if request.get("subtype") != "can_use_tool":
            # Answered with an error (see ClaudeBackend.reply) so the CLI never waits.
            return [AgentEvent("raw", "", {"reason": f"control_request "
                                                     f"{request.get('subtype')!s}",
                                           "request_id": request_id})]
        name = str(request["tool_name"])
        tool_input = request.get("input") or {}
        if self.read_only and name in EDIT_TOOLS:
            decision, why = "deny", "read-only: no edits"
        else:
            decision = self.permissions.decide(name, tool_input)
            why = {"allow": "allowed by the configuration",
                   "deny": "denied by the configuration"}.get(decision, "")
        return [AgentEvent("permission", str(request.get("decision_reason") or ""), {
            "name": name, "input": tool_input, "id": request_id,
            "tool_use_id": request.get("tool_use_id"), "decision": decision,
            "reason": why})]

    def _result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        usage = obj.get("usage") or {}
        events = [AgentEvent("usage", "", {
            "input_tokens": int(usage.get("input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
            "cached_tokens": int(usage.get("cache_read_input_tokens") or 0),
            "cache_creation_tokens": int(usage.get("cache_creation_input_tokens") or 0),
            "cost_usd": float(obj.get("total_cost_usd") or 0.0),
            "turns": obj.get("num_turns")})]
        data = {"subtype": obj.get("subtype"), "is_error": bool(obj.get("is_error")),
                "terminal_reason": obj.get("terminal_reason"),
                "permission_denials": obj.get("permission_denials") or []}
        if obj.get("is_error"):
            aborted = str(obj.get("terminal_reason") or "").startswith("aborted")
            # The result text, else its errors ("No conversation found with session
            # ID: ..."), leaving out the CLI's internal "[ede_diagnostic]" notes.
            notes = [str(note) for note in obj.get("errors") or []
                     if not str(note).startswith("[ede_diagnostic]")]
            said = _one_line(str(obj.get("result") or "") or "; ".join(notes))
            if not said:
                said = "interrupted" if aborted else str(obj.get("subtype") or "failed")
            if self.error is None:  # an API error told before says it already
                events.append(AgentEvent("error", f"claude: {said}",
                                         {"status": obj.get("api_error_status")}))
            events.append(AgentEvent("finished", "", {
                **data, "stop_reason": "interrupted" if aborted else "error"}))
            return events
        answer = obj.get("structured_output")
        text = (json.dumps(answer) if answer is not None else str(obj.get("result") or ""))
        events.append(AgentEvent("finished", text, {
            **data, "stop_reason": obj.get("stop_reason") or "end_turn"}))
        return events


class ClaudeBackend(Backend):
    """Claude Code, ``claude -p`` with stream-json in and out and the permission prompt
    on stdio: edits in the workspace are accepted (``acceptEdits``, which also lets
    rm/mv/cp/mkdir/touch inside the workspace run: Claude counts them as edits); a
    read-only request runs in ``default`` mode, where an edit asks and is denied.
    ``request.permissions`` go to ``--allowedTools``/``--disallowedTools`` as Claude's
    own rules (``Bash(pytest:*)``), and what still asks is answered by
    ``Permissions.decide``; the interrupt is the protocol's own."""

    name: ClassVar[str] = "claude"
    binary: ClassVar[str] = "claude"
    package: ClassVar[str] = "@anthropic-ai/claude-code"
    stdin: ClassVar[bool] = True
    close_stdin_when_done: ClassVar[bool] = True  # else it waits for the next prompt

    def argv(self, request: AgentRequest) -> list[str]:
        """The arguments after the executable."""
        args = ["-p", "--output-format", "stream-json", "--input-format", "stream-json",
                "--verbose",
                # acceptEdits: file edits inside the cwd run without asking; everything
                # else that needs permission asks us on stdout (can_use_tool). Read
                # only: "default", so an edit asks too, and is denied.
                "--permission-mode", "default" if request.read_only else "acceptEdits",
                "--permission-prompt-tool", "stdio"]
        if request.session:
            args += ["--resume", request.session]
        if request.model:
            args += ["--model", request.model]
        if request.instructions:
            args += ["--append-system-prompt", request.instructions]
        if request.schema is not None:
            # "=" keeps a variadic or value option from eating what follows.
            args.append(f"--json-schema={json.dumps(request.schema)}")
        effort = THINKING_EFFORT.get(request.thinking, request.thinking)
        if effort in EFFORTS:
            args += ["--effort", effort]
        deny = [tool for tool in request.permissions.deny if tool != "*"]
        if deny:
            # Denied outright, so the model is not even offered them.
            args.append(f"--disallowedTools={','.join(deny)}")
        # A tool an ask rule names must reach us to be asked: Claude's own allow rule
        # would run it unasked (what the allow rules cover is still allowed, by
        # Permissions.decide, when Claude asks).
        asking = {_tool_of(rule) for rule in request.permissions.ask}
        allow = [tool for tool in request.permissions.allow if tool != "*" and not (
            request.read_only and _tool_of(tool) in EDIT_TOOLS) and
            _tool_of(tool) not in asking]
        if allow:
            # Claude's own rules (``Bash(pytest:*)``): what they allow runs without
            # asking; what still asks is answered by Permissions.decide.
            args.append(f"--allowedTools={','.join(allow)}")
        return [*args, *request.args]

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """Telemetry, updates and error reports off; few API retries unless set;
        thinking off when the request says so (unless the user's env sets it)."""
        env = dict(QUIET)
        if request.thinking == "off" and "MAX_THINKING_TOKENS" not in os.environ and \
                "MAX_THINKING_TOKENS" not in request.env:
            env["MAX_THINKING_TOKENS"] = "0"
        if "CLAUDE_CODE_MAX_RETRIES" not in os.environ and \
                "CLAUDE_CODE_MAX_RETRIES" not in request.env:
            env["CLAUDE_CODE_MAX_RETRIES"] = DEFAULT_MAX_RETRIES
        return env

    def first_input(self, request: AgentRequest) -> bytes | None:
        """The prompt, as one stream-json user message."""
        message = {"type": "user", "session_id": "", "parent_tool_use_id": None,
                   "message": {"role": "user", "content": request.prompt}}
        return (json.dumps(message) + "\n").encode()

    def reply(self, event: AgentEvent, request: AgentRequest) -> bytes | None:
        """The control_response to a permission request (or to a control request we do
        not serve: an error, so the CLI goes on)."""
        if event.kind == "permission":
            if event.data["decision"] == "allow":
                answer: dict[str, Any] = {"behavior": "allow",
                                          "updatedInput": event.data["input"]}
            else:
                why = " (read-only: no edits)" if request.read_only and \
                    event.data["name"] in EDIT_TOOLS else ""
                said = str(event.data.get("message") or "")
                answer = {"behavior": "deny",
                          "message": said or f"{event.data['name']} is not allowed here{why}"}
            response: dict[str, Any] = {"subtype": "success",
                                        "request_id": event.data["id"], "response": answer}
        elif event.kind == "raw" and event.data.get("request_id"):
            response = {"subtype": "error", "request_id": event.data["request_id"],
                        "error": "not supported by this client"}
        else:
            return None
        return (json.dumps({"type": "control_response", "response": response}) +
                "\n").encode()

    def interrupt(self) -> bytes | None:
        """The stream-json control protocol's interrupt (it ends the turn with a
        ``result``; the runner then closes stdin and it exits)."""
        line = {"type": "control_request", "request_id": f"interrupt-{uuid.uuid4().hex}",
                "request": {"subtype": "interrupt"}}
        return (json.dumps(line) + "\n").encode()

    def done(self, event: AgentEvent) -> bool:
        """The ``result`` line ends the turn."""
        return event.kind == "finished"

    def parser(self) -> Parser:
        """A parser that denies every tool that asks (no request known)."""
        return ClaudeParser()

    def parser_for(self, request: AgentRequest) -> Parser:
        """A parser that decides permission requests from ``request.permissions``."""
        return ClaudeParser(request.permissions, request.read_only)
