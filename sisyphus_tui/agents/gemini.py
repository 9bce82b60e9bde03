"""The Gemini CLI (``@google/gemini-cli``), headless: ``gemini --prompt=... --output-format
stream-json``, one JSON object a line.

Its lines: ``init`` {session_id, model}; ``message`` (role ``user``: the prompt echoed;
role ``assistant``: chunks with ``delta: true``, joined here into one ``text`` event per
message); ``tool_use`` {tool_name, tool_id, parameters}; ``tool_result`` {tool_id,
status, output, error{type, message}}; ``error`` {severity, message} (``warning`` ones
are not fatal); ``result`` {status, error?, stats{input_tokens, output_tokens, cached,
total_tokens, tool_calls, duration_ms, models}}, its stats counting every model call
of the turn (a routing call with model "auto" included). Thought parts are not printed
in this format, so there is no ``thinking`` event.

How a request is honoured:
- edits: ``--approval-mode auto_edit`` (headless Gemini offers no write tool at all in
  the default mode), ``--skip-trust`` (else it refuses an untrusted folder, or drops
  the approval mode back to default);
- other tools: a policy file (``--policy``) from ``Permissions``: each allowed tool
  ``allow``, each denied one ``deny``; ``web_fetch``, which ``auto_edit`` would allow
  on its own, denied unless allowed; the CLI's defaults deny the rest headless;
- instructions and schema: put before/after the prompt, marked as such (the CLI has
  no flag that appends to its system prompt: ``GEMINI_SYSTEM_MD`` replaces the whole
  built-in one, tool rules included, and a ``GEMINI.md`` would have to be written into
  the workspace or the home);
- quiet: ``GEMINI_TELEMETRY_ENABLED=false``; usage statistics and auto-update are
  settings only, and a settings file of ours cannot be slipped in: the system and
  system-defaults ones (``GEMINI_CLI_SYSTEM_*_PATH``) are skipped unless root owns
  them and every folder above them, and ``GEMINI_CLI_HOME`` would move the user's
  login and sessions. So ``~/.gemini/settings.json`` (the user's) decides them;
- auth: with ``GOOGLE_GEMINI_BASE_URL`` set, the CLI guesses a "gateway" auth it then
  refuses headless ("Invalid auth method selected"): ``security.auth.selectedType``
  must be set in the user's settings (``gemini-api-key``);
- signals: ``GEMINI_CLI_NO_RELAUNCH=true``, else it relaunches itself as a child and
  the parent ignores SIGINT and SIGTERM (the runner signals the whole group anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from sisyphus_tui.agents.base import (
    RAW_MAX_CHARS,
    AgentEvent,
    AgentRequest,
    Backend,
    Parser,
    Permissions,
    PerRequest,
    bounded,
)

# Generic tool names a config may use, as the Gemini CLI's own.
TOOL_NAMES = {
    "read": "read_file",
    "write": "write_file",
    "edit": "replace",
    "shell": "run_shell_command",
    "bash": "run_shell_command",
    "fetch": "web_fetch",
    "web": "web_fetch",
    "search": "google_web_search",
}
# Tools that ``auto_edit`` allows that are no edit (denied unless Permissions allow).
AUTO_ALLOWED = ("web_fetch",)
# The tools that change files: denied in a read-only request, over any other rule.
EDIT_TOOLS = ("write_file", "replace")
# What it prints on stderr at every start (not the reason it exited).
STDERR_NOTICES = ("Warning: 256-color support not detected", "Ripgrep is not available",
                  "Approval mode overridden", "Loaded cached credentials")
API_ERROR_RE = re.compile(r"^\[API Error: (.*)\]$", re.S)


def tool_name(name: str) -> str:
    """A tool's name as the Gemini CLI calls it (generic names mapped)."""
    return TOOL_NAMES.get(name.lower(), name)


def policy_toml(permissions: Permissions, read_only: bool = False) -> str:
    """The policy rules (user tier) that make the CLI follow ``permissions`` (and, when
    ``read_only``, refuse every edit whatever they allow)."""
    allow = [tool_name(n) for n in permissions.allow if n != "*"]
    deny = [tool_name(n) for n in permissions.deny]
    rules: list[tuple[str, str, int]] = []
    if read_only:
        rules += [(n, "deny", 950) for n in EDIT_TOOLS]
    rules += [(n, "deny", 900) for n in deny]
    rules += [(n, "allow", 800) for n in allow if n not in deny]
    if "*" in permissions.allow:
        rules.append(("*", "allow", 500))
    else:
        rules += [(n, "deny", 100) for n in AUTO_ALLOWED if n not in allow]
    lines = ["# Written by sisyphus-tui from the agent's Permissions.\n"]
    for name, decision, priority in rules:
        # A JSON string is a valid TOML basic string.
        lines.append(f"[[rule]]\ntoolName = {json.dumps(name)}\n"
                     f"decision = \"{decision}\"\npriority = {priority}\n")
    return "\n".join(lines)


def api_error_line(message: str) -> str:
    """The CLI's ``[API Error: {json}]`` as one readable line (bounded)."""
    return _api_error_line(message)[:300]


def _api_error_line(message: str) -> str:
    found = API_ERROR_RE.match(message.strip())
    if found is None:
        return " ".join(message.split())
    try:
        body = json.loads(found.group(1))
    except ValueError:  # "exception TypeError: fetch failed sending request" (refused)
        return "API error: " + " ".join(found.group(1).split())
    error = body.get("error", body) if isinstance(body, dict) else body
    if not isinstance(error, dict):
        return " ".join(message.split())
    code = error.get("code")
    status = error.get("status")
    said = " ".join(str(error.get("message") or "").split())
    head = "API error" if code is None else f"API error {code}"
    if status:
        head += f" ({status})"
    return f"{head}: {said}" if said else head


class GeminiParser(Parser):
    """Reads ``gemini --output-format stream-json`` lines."""

    name: ClassVar[str] = "gemini"
    # A "success" result; not loop_detected (the CLI stopped the turn itself).
    NORMAL_STOPS: ClassVar[frozenset[str]] = frozenset({"end_turn"})

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[str] = []  # the assistant message being streamed
        self._chunk_lines: list[str] = []
        self._tools: dict[str, tuple[str, Any]] = {}  # tool_id -> (name, input)
        self._last_message = ""  # since the last tool call: the turn's answer
        self._line = ""  # the line being read
        self._stop_reason = "end_turn"

    def read(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """The events of one line (a streamed message's text comes out whole when the
        message ends: at the next other line)."""
        kind = obj.get("type")
        if kind == "message" and obj.get("role") == "assistant" and obj.get("delta"):
            self._chunks.append(str(obj.get("content") or ""))
            self._chunk_lines.append(self._line)
            return []
        flushed = self.flush()
        events = self._own(obj, kind)
        if flushed and events and events[0].raw is None:
            # The runner gives its line to the first event only: here the flushed text.
            events[0] = replace(events[0], raw=self._line[:RAW_MAX_CHARS])
        return flushed + events

    def feed(self, line: str) -> list[AgentEvent]:
        """As ``Parser.feed`` (which says a line cut at the runner's bound), the line
        kept for the raw of its events."""
        self._line = line.strip()
        return super().feed(line)

    def _own(self, obj: dict[str, Any], kind: Any) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        if kind == "init":
            events.append(AgentEvent("session", data={"session_id": str(obj["session_id"]),
                                                       "model": obj.get("model")}))
        elif kind == "message" and obj.get("role") == "assistant":
            text = str(obj.get("content") or "")
            if text:
                self._last_message = text
                events.append(AgentEvent("text", text))
        elif kind == "message":
            events.append(AgentEvent("raw", "", {"reason": f"{obj.get('role')} message"}))
        elif kind == "tool_use":
            tool_id = str(obj.get("tool_id") or "")
            name = str(obj["tool_name"])
            self._tools[tool_id] = (name, obj.get("parameters"))
            self._last_message = ""
            events.append(AgentEvent("tool_call", data={
                "name": name, "input": obj.get("parameters") or {}, "id": tool_id}))
        elif kind == "tool_result":
            events += self._tool_result(obj)
        elif kind == "error":
            message = " ".join(str(obj.get("message") or "").split())[:300]
            if obj.get("severity") == "error":
                events.append(AgentEvent("error", f"gemini: {message}"))
            else:
                if message.startswith("Loop detected"):
                    # It stops the turn and still says "success": the stop reason tells.
                    self._stop_reason = "loop_detected"
                events.append(AgentEvent("raw", message, {"reason": "warning"}))
        elif kind == "result":
            events += self._result(obj)
        else:
            events.append(AgentEvent("raw", "", {"reason": f"unknown type {kind!r}"}))
        return events

    def flush(self) -> list[AgentEvent]:
        """The streamed message so far as one ``text`` event (its lines as its raw)."""
        if not self._chunks:
            return []
        text = "".join(self._chunks)
        raw = "\n".join(self._chunk_lines)[:RAW_MAX_CHARS]
        self._chunks, self._chunk_lines = [], []
        if not text:
            return []
        self._last_message = text
        return [AgentEvent("text", text, raw=raw)]

    def _tool_result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        tool_id = str(obj.get("tool_id") or "")
        failed = obj.get("status") != "success"
        error = _mapping(obj.get("error"))
        text = str(obj.get("output") or "") or (str(error.get("message") or "")
                                                if failed else "")
        events = []
        if failed and error.get("type") == "policy_violation":
            # Asked, and refused by the policy: the permission it did not get.
            name, tool_input = self._tools.get(tool_id, ("?", {}))
            events.append(AgentEvent("permission", text, {
                "name": name, "input": tool_input or {}, "decision": "deny", "id": tool_id}))
        events.append(AgentEvent("tool_result", bounded(text), {
            "id": tool_id, "is_error": failed,
            **({"error_type": error.get("type")} if failed and error.get("type") else {})}))
        return events

    def _result(self, obj: dict[str, Any]) -> list[AgentEvent]:
        events = []
        stats = obj.get("stats")
        if isinstance(stats, dict):
            events.append(AgentEvent("usage", data={
                "input_tokens": int(stats.get("input_tokens") or 0),
                "output_tokens": int(stats.get("output_tokens") or 0),
                "cached_tokens": int(stats.get("cached") or 0),
                "total_tokens": int(stats.get("total_tokens") or 0),
                "tool_calls": int(stats.get("tool_calls") or 0),
                "duration_ms": stats.get("duration_ms"),
                "models": stats.get("models") or {}}))
        if obj.get("status") == "success":
            events.append(AgentEvent("finished", self._last_message,
                                     {"stop_reason": self._stop_reason}))
            return events
        error = _mapping(obj.get("error"))
        message = api_error_line(str(error.get("message") or "the turn failed"))
        kind = str(error.get("type") or "error")
        events.append(AgentEvent("error", f"gemini: {message}", {"type": kind}))
        events.append(AgentEvent("finished", "", {"stop_reason": "error"}))
        return events


class GeminiBackend(Backend):
    """Google's Gemini CLI, headless, one prompt a run (``--resume`` continues)."""

    name = "gemini"
    binary = "gemini"
    package = "@google/gemini-cli"

    def __init__(self) -> None:
        # The policy file prepare wrote for each request.
        self._policies: PerRequest[Path] = PerRequest()

    async def prepare(self, request: AgentRequest) -> None:
        """Write the policy file, off the event loop."""
        self._policies.put(request, await asyncio.to_thread(self._write_policy, request))

    def _write_policy(self, request: AgentRequest) -> Path:
        folder = self._folder(request)
        folder.mkdir(parents=True, exist_ok=True)
        rules = policy_toml(request.permissions, request.read_only)
        policy = folder / f"gemini-policy-{_digest(rules)}.toml"
        _write_if_changed(policy, rules)
        return policy

    def argv(self, request: AgentRequest) -> list[str]:
        """``gemini --prompt=... --output-format stream-json`` with the request's model,
        session, approval mode and policy (the file ``prepare`` wrote, else written
        here)."""
        policy = self._policies.get(request) or self._write_policy(request)
        # Read only: the default mode, in which headless Gemini offers no write tool
        # (and the policy denies them, should the model call one anyway).
        mode = "default" if request.read_only else "auto_edit"
        argv = [f"--prompt={self.prompt(request)}", "--output-format", "stream-json",
                "--approval-mode", mode, "--skip-trust", "--policy", str(policy)]
        if request.model:
            argv += ["--model", request.model]
        if request.session:
            argv += ["--resume", request.session]
        return argv + list(request.args)

    def prompt(self, request: AgentRequest) -> str:
        """The prompt, with the instructions before it and the schema after it."""
        text = request.prompt
        if request.instructions.strip():
            text = (f"<instructions>\n{request.instructions.strip()}\n</instructions>\n\n"
                    f"{text}")
        if request.schema is not None:
            text += ("\n\nYour final answer must be one JSON value, and nothing else, "
                     "that fits this JSON schema:\n" + json.dumps(request.schema, indent=2))
        return text

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """No relaunch as a child (signals reach the real process), telemetry off
        (usage statistics and auto-update are settings only: the user's own)."""
        return {
            "GEMINI_CLI_NO_RELAUNCH": "true",
            "GEMINI_TELEMETRY_ENABLED": "false",
        }

    def exit_line(self, stderr: str) -> str | None:
        """Its first line that is not one of its start-up notices: the error comes
        first (yargs prints the whole usage after an unknown flag; a missing key is
        said over two lines, the second only "Update your environment...")."""
        for line in stderr.splitlines():
            flat = " ".join(line.split())
            if flat and not flat.startswith(STDERR_NOTICES):
                return flat
        return None

    def done(self, event: AgentEvent) -> bool:
        """The turn is over at its ``result`` line."""
        return event.kind == "finished"

    def parser(self) -> Parser:
        """A fresh stream-json parser."""
        return GeminiParser()

    def _folder(self, request: AgentRequest) -> Path:
        """Where the policy file goes: the request's state folder, else one of ours in
        the user's cache (the file is named by its content, so runs share it and
        nothing piles up)."""
        if request.state_dir is not None:
            return request.state_dir
        env = {**os.environ, **request.env}
        cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home())
                                                 / ".cache")
        return Path(cache) / "sisyphus-tui" / "gemini"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: a concurrent run never reads half a file
