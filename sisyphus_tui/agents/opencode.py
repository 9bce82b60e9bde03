"""opencode (``opencode``, npm ``opencode-ai``) run headless: ``opencode run --format
json``, one prompt on the command line, one JSON object a line on stdout.

What it prints (1.18.33), each line ``{"type", "timestamp", "sessionID", ...}``:
- ``step_start`` ``{part}``: a model call starts (nothing to show; its ``sessionID``
  is the session, said once).
- ``text`` ``{part: {text, messageID}}``: one whole text part of a message.
- ``reasoning`` ``{part: {text}}`` (with ``--thinking``): the model's reasoning.
- ``tool_use`` ``{part: {tool, callID, state: {status, input, output | error}}}``: a
  tool call, printed once it has completed or failed (input and result together).
- ``step_finish`` ``{part: {reason, messageID, tokens: {input, output, reasoning,
  cache: {read, write}}, cost}}``: a model call ended; ``reason`` ``tool-calls`` means
  another step follows, anything else (``stop``, ``length``) ends the turn.
- ``error`` ``{error: {name, data: {message, statusCode?, ref?}}}``: the turn failed
  (the process then exits 1). An ``UnknownError`` says only "check server logs": its
  cause is the ERROR line ``--print-logs`` puts on stderr, which the run's error
  quotes (an unknown model says so only there).

How it is set up, and why:
- ``--dir WORKSPACE`` and ``PWD``: opencode takes its directory from ``$PWD`` before
  ``getcwd()``, so a child started with ``cwd=`` alone works in its parent's folder.
- Permissions: a generated agent (``--agent sisyphus``) in ``OPENCODE_CONFIG_CONTENT``
  whose rules come last (opencode applies the last matching rule): everything denied,
  then reading and editing the workspace allowed, then ``Permissions``. The same rules
  go into ``OPENCODE_PERMISSION`` (merged over every config's ``permission``), so the
  subagents the ``task`` tool starts follow them too. Nothing is ever "ask": ``run``
  rejects every question itself.
- ``OPENCODE_CONFIG_CONTENT`` is merged by opencode over the user's global and project
  config (their providers, models and keys still apply); one the user already set in
  the inherited environment is merged under ours.
- Instructions: a file in ``state_dir`` listed in the config's ``instructions``
  (opencode appends those files to its system prompt and joins the lists of every
  config); without a ``state_dir`` they lead the prompt.
- The prompt: on stdin, closed after it (``run`` wraps a message argument that holds
  a space in double quotes, and yargs reads a word like ``42`` as a number).
- A schema: opencode has no flag for one: it is stated in the prompt.
- HTTP errors: opencode retries a 5xx five times (2, 4, 8, 16, 32 s apart: over a
  minute) with no setting to change it, but honours a ``retry-after-ms`` /
  ``retry-after`` header; the request's ``timeout_s`` bounds the rest.
- It ignores SIGINT: a cancel ends with the runner's SIGKILL of its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from sisyphus_tui.agents.base import (
    AgentEvent,
    AgentRequest,
    Backend,
    Parser,
    Permissions,
    PerRequest,
    bounded,
)

AGENT = "sisyphus"  # the generated agent the run uses (its rules are ours alone)
QUIET = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_AUTOCOMPACT": "1",  # a compaction is a model call of its own
}
# Working in the workspace needs no asking: reading it, and editing it (opencode's
# ``edit`` permission covers its write, edit and patch tools).
WORKSPACE_TOOLS = ("read", "glob", "grep", "list", "edit", "todowrite")
# The swarm's generic tool names, as opencode's permissions name them.
ALIASES = {"shell": "bash", "write": "edit", "patch": "edit", "apply_patch": "edit",
           "fetch": "webfetch", "web": "webfetch"}
DENIED_MARKS = ("rule which prevents you from using", "rejected permission")
UNAVAILABLE_MARK = "tried to call unavailable tool"


# The permissions that change files: denied in a read-only request, after every other
# rule (opencode's ``edit`` covers its write, edit and patch tools).
EDIT_PERMISSIONS = ("edit", "write", "patch")


def permission_rules(permissions: Permissions, read_only: bool = False) -> dict[str, Any]:
    """opencode's permission rules for ``permissions``, in the order they apply (the
    last matching rule wins): everything denied (unless ``*`` is allowed), the
    workspace's reading and editing allowed, then the allowed tools, then the denied;
    ``read_only``: the edits denied last of all."""
    rules: dict[str, Any] = {"*": "allow" if "*" in permissions.allow else "deny"}
    for tool in WORKSPACE_TOOLS:
        rules[tool] = "allow"
    rules["external_directory"] = "deny"  # outside the workspace: not without asking
    for tool in permissions.allow:
        if tool != "*":
            rules[ALIASES.get(tool.lower(), tool.lower())] = "allow"
    for tool in permissions.deny:
        rules[ALIASES.get(tool.lower(), tool.lower())] = "deny"
    if read_only:
        for tool in EDIT_PERMISSIONS:
            rules.pop(tool, None)  # re-added last: a JSON object keeps its key's place
            rules[tool] = "deny"
    return rules


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` (objects deeply, lists joined, the rest replaced)."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            merged[key] = merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            merged[key] = old + [item for item in value if item not in old]
        else:
            merged[key] = value
    return merged


def _obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a line's shape is data)."""
    return value if isinstance(value, dict) else {}


def schema_text(schema: dict[str, Any]) -> str:
    """What the prompt says when the answer must fit a JSON schema."""
    return ("\n\nYour final message must be only a JSON value that fits this JSON "
            "schema (no prose, no code fence):\n" + json.dumps(schema, indent=2))


class OpencodeParser(Parser):
    """Reads ``opencode run --format json``'s lines."""

    name: ClassVar[str] = "opencode"
    # The AI SDK's finish reasons: only "stop" is a turn that ended well (not length,
    # content-filter, error, other, unknown).
    NORMAL_STOPS: ClassVar[frozenset[str]] = frozenset({"stop"})

    def __init__(self) -> None:
        super().__init__()
        self.totals = {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0,
                       "cached_tokens": 0, "cache_write_tokens": 0}
        self.cost = 0.0
        self.steps = 0
        self._message_texts: dict[str, list[str]] = {}

    def read(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """The events of one line of opencode's JSON output."""
        events: list[AgentEvent] = []
        session = obj.get("sessionID")
        if isinstance(session, str) and session and self.session is None:
            events.append(AgentEvent("session", "", {"session_id": session}))
        kind = obj.get("type")
        part = _obj(obj.get("part"))
        if kind == "step_start":
            pass  # nothing to show: the step's end says what it did
        elif kind == "text":
            text = str(part.get("text") or "")
            if text.strip():
                message = str(part.get("messageID") or "")
                self._message_texts.setdefault(message, []).append(text)
                events.append(AgentEvent("text", text, {"message_id": message}))
        elif kind == "reasoning":
            text = str(part.get("text") or "")
            if text.strip():
                events.append(AgentEvent("thinking", text))
        elif kind == "tool_use":
            events.extend(self._tool(part))
        elif kind == "step_finish":
            events.extend(self._step_finish(part))
        elif kind == "error":
            error = _obj(obj.get("error"))
            if error.get("name") == "UnknownError":
                # "Unexpected server error. Check server logs": the cause is the ERROR
                # log line on stderr (--print-logs), which the run's error then quotes.
                events.append(AgentEvent("raw", "", {"reason": "opencode UnknownError "
                                                     "(its cause is on stderr)"}))
            else:
                events.append(AgentEvent("error", self._error_line(error),
                                         {"error": error}))
        else:
            events.append(AgentEvent("raw", "", {"reason": f"unknown type {kind!r}"}))
        return events

    def _note(self, event: AgentEvent) -> None:
        super()._note(event)
        if event.kind == "usage":
            # The run's usage: every step so far (an event holds its step's share).
            self.usage = {**self.totals, "cost_usd": self.cost, "steps": self.steps}

    def _tool(self, part: dict[str, Any]) -> list[AgentEvent]:
        state = _obj(part.get("state"))
        name = str(part.get("tool") or "?")
        call_id = str(part.get("callID") or part.get("id") or "")
        tool_input = _obj(state.get("input"))
        failed = state.get("status") == "error"
        output = state.get("error") if failed else state.get("output")
        text = output if isinstance(output, str) else json.dumps(output)
        # A call of a tool it does not have (one denied outright is not offered) runs
        # its "invalid" tool, "completed": a failed call all the same.
        invalid = name == "invalid"
        events = [AgentEvent("tool_call", "", {"name": name, "input": tool_input,
                                               "id": call_id}),
                  AgentEvent("tool_result", bounded(text or ""),
                             {"id": call_id, "name": name,
                              "is_error": failed or invalid})]
        if invalid and UNAVAILABLE_MARK in (text or "") and tool_input.get("tool"):
            # The tool the model tried is not offered: the rules denied it outright.
            tried = str(tool_input["tool"])
            events.insert(1, AgentEvent("permission", tried,
                                        {"name": tried, "input": tool_input,
                                         "decision": "deny", "reason": "not offered"}))
        elif failed and any(mark in (text or "") for mark in DENIED_MARKS):
            # opencode decided it from the rules given: said as the permission it was.
            events.insert(1, AgentEvent("permission", name,
                                        {"name": name, "input": tool_input,
                                         "decision": "deny"}))
        return events

    def _step_finish(self, part: dict[str, Any]) -> list[AgentEvent]:
        tokens = _obj(part.get("tokens"))
        cache = _obj(tokens.get("cache"))
        self.steps += 1
        # Per model call: each usage event is its step's share (summed once by the
        # ledger, however many steps a turn takes); the run's usage is their sum.
        step = {"input_tokens": int(tokens.get("input") or 0),
                "output_tokens": int(tokens.get("output") or 0),
                "reasoning_tokens": int(tokens.get("reasoning") or 0),
                "cached_tokens": int(cache.get("read") or 0),
                "cache_write_tokens": int(cache.get("write") or 0)}
        for key, value in step.items():
            self.totals[key] += value
        cost = float(part.get("cost") or 0.0)
        self.cost += cost
        usage: dict[str, Any] = {**step, "cost_usd": cost, "step": self.steps,
                                 "scope": "step"}
        events = [AgentEvent("usage", "", usage)]
        reason = str(part.get("reason") or "")
        if reason != "tool-calls":
            texts = self._message_texts.get(str(part.get("messageID") or ""), [])
            events.append(AgentEvent("finished", "\n".join(texts).strip(),
                                     {"stop_reason": reason or "stop"}))
        return events

    def _error_line(self, error: dict[str, Any]) -> str:
        name = str(error.get("name") or "error")
        data = _obj(error.get("data"))
        message = str(data.get("message") or name)
        status = data.get("statusCode")
        where = ""
        url = _obj(data.get("metadata")).get("url")
        if url:
            where = f" ({url})"
        said = f"HTTP {status}: {message}" if status else f"{name}: {message}"
        return " ".join(f"opencode: {said}{where}".split())[:300]


class OpencodeBackend(Backend):
    """``opencode run --format json`` in the workspace, its rules and instructions in a
    generated config merged over the user's own."""

    name: ClassVar[str] = "opencode"
    binary: ClassVar[str] = "opencode"
    package: ClassVar[str] = "opencode-ai"
    stdin: ClassVar[bool] = True
    close_stdin_after_input: ClassVar[bool] = True

    def argv(self, request: AgentRequest) -> list[str]:
        """``run --format json --thinking --dir WS --agent sisyphus [-m] [--session]
        ARGS`` (the prompt on stdin)."""
        # --print-logs at ERROR: the cause of an "Unexpected server error" is on stderr.
        argv = ["run", "--format", "json", "--thinking", "--print-logs", "--log-level",
                "ERROR",
                "--dir", str(request.workspace.resolve()), "--agent", AGENT]
        if request.model:
            argv += ["-m", request.model]
        if request.session:
            argv += ["--session", request.session]
        return [*argv, *request.args]

    def first_input(self, request: AgentRequest) -> bytes | None:
        """The message, on stdin (then closed: ``run`` reads it to its end)."""
        return self.prompt(request).encode()

    def prompt(self, request: AgentRequest) -> str:
        """The message sent: the prompt, the instructions when they have no file, the
        schema the answer must fit."""
        text = request.prompt
        if request.instructions and self.instructions_file(request) is None:
            text = f"{request.instructions}\n\n{text}"
        if request.schema is not None:
            text += schema_text(request.schema)
        return text

    def __init__(self) -> None:
        # What prepare wrote for each request: the instructions file (None: none).
        self._prepared: PerRequest[Path | None] = PerRequest()

    async def prepare(self, request: AgentRequest) -> None:
        """Write the instructions file and our own config section to ``state_dir``,
        off the event loop."""
        self._prepared.put(request, await asyncio.to_thread(self._write_files, request))

    def _write_files(self, request: AgentRequest) -> Path | None:
        path = self._write_instructions(request)
        if request.state_dir is not None:
            # Kept for whoever looks at the run afterwards: what this run added. Only
            # our own section: the user's OPENCODE_CONFIG_CONTENT (provider keys) is
            # never written to disk.
            with contextlib.suppress(OSError):
                request.state_dir.mkdir(parents=True, exist_ok=True)
                (request.state_dir / "opencode-config.json").write_text(
                    json.dumps(self._config(request, path), indent=2))
        return path

    def config(self, request: AgentRequest) -> dict[str, Any]:
        """The config this run adds over the user's: the agent, its rules, the
        instructions file (written to ``state_dir`` by ``prepare``, else here)."""
        return self._config(request, self.instructions_file(request))

    def _config(self, request: AgentRequest, instructions: Path | None) -> dict[str, Any]:
        config: dict[str, Any] = {"agent": {AGENT: {
            "mode": "primary",
            "description": "sisyphus-tui's agent: the swarm's permissions",
            "permission": permission_rules(request.permissions, request.read_only)}}}
        if instructions is not None:
            config["instructions"] = [str(instructions)]
        return config

    def instructions_file(self, request: AgentRequest) -> Path | None:
        """The request's instructions file in ``state_dir`` (None: no instructions,
        or nowhere to write them: they then lead the prompt): the one ``prepare``
        wrote, else written now."""
        if request in self._prepared:
            return self._prepared.get(request)
        return self._write_instructions(request)

    @staticmethod
    def _write_instructions(request: AgentRequest) -> Path | None:
        if not request.instructions or request.state_dir is None:
            return None
        path = request.state_dir.resolve() / "opencode-instructions.md"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(request.instructions)
        except OSError:
            return None
        return path

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """No updates, model list fetches, LSP downloads or sharing; the workspace as
        ``PWD``; the generated config (over the user's ``OPENCODE_CONFIG_CONTENT``, in
        the environment only) and rules."""
        if request not in self._prepared:
            self._prepared.put(request, self._write_files(request))
        config = self.config(request)
        user = request.env.get("OPENCODE_CONFIG_CONTENT",
                               os.environ.get("OPENCODE_CONFIG_CONTENT", ""))
        if user.strip():
            try:
                theirs = json.loads(user)
            except ValueError:
                theirs = None
            if isinstance(theirs, dict):
                config = merge(theirs, config)
        return {**QUIET,
                "PWD": str(request.workspace.resolve()),
                "OPENCODE_CONFIG_CONTENT": json.dumps(config),
                "OPENCODE_PERMISSION": json.dumps(permission_rules(request.permissions,
                                                                   request.read_only))}

    def parser(self) -> Parser:
        """A fresh parser for one run."""
        return OpencodeParser()
