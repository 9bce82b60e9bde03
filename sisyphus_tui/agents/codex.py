"""OpenAI Codex CLI (``@openai/codex``), run headless: ``codex exec --json`` prints one
JSON event a line; ``codex exec resume THREAD_ID`` continues a thread.

The events (0.171.0): ``thread.started{thread_id}``, ``turn.started``,
``item.started`` / ``item.updated`` / ``item.completed`` of an ``item`` (``agent_message``,
``reasoning``, ``command_execution``, ``file_change``, ``mcp_tool_call``, ``web_search``,
``todo_list``, ``error``: a warning, not fatal), ``turn.completed{usage}``,
``turn.failed{error}`` and a top-level ``error{message}`` (fatal, except the
``Reconnecting...`` notices of a retry).

The policy: approval ``never`` (exec mode cannot ask; ``untrusted`` aborts), sandbox
``workspace-write`` (commands may write inside the workspace and the temp folders, not
elsewhere, no network; measured to hold in this container: a write outside fails with
"Read-only file system"). ``Permissions`` add to that, denied by default: ``network``
opens the sandbox's network, ``web_search`` keeps Codex's search tool.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sisyphus_tui.agents.base import (
    AgentEvent,
    AgentRequest,
    Backend,
    Parser,
    PerRequest,
    bounded,
)

USAGE_KEYS = ("input_tokens", "cached_input_tokens", "output_tokens",
              "reasoning_output_tokens")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (``-c key=VALUE`` parses VALUE as TOML; a value
    that fails to parse would be taken literally, quotes and all)."""
    out: list[str] = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def codex_home(request: AgentRequest) -> Path:
    """The CLI's own folder: ``$CODEX_HOME``, else ``~/.codex`` (the request's env first)."""
    explicit = request.env.get("CODEX_HOME") or os.environ.get("CODEX_HOME")
    if explicit:
        return Path(explicit)
    home = request.env.get("HOME") or os.environ.get("HOME") or str(Path.home())
    return Path(home) / ".codex"


def thread_usage(home: Path, thread_id: str) -> dict[str, int] | None:
    """The thread's token totals so far, from its rollout file
    (``sessions/YYYY/MM/DD/rollout-*-THREAD.jsonl``, last ``token_count``), or None."""
    sessions = home / "sessions"
    if not sessions.is_dir() or "/" in thread_id:
        return None
    totals: dict[str, int] | None = None
    for path in sorted(sessions.rglob(f"rollout-*-{thread_id}.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"token_count"' not in line:
                continue
            try:
                payload = json.loads(line).get("payload") or {}
                total = (payload.get("info") or {}).get("total_token_usage")
            except (ValueError, AttributeError):
                continue
            if isinstance(total, dict):
                totals = {key: int(total.get(key) or 0) for key in USAGE_KEYS}
    return totals


def configured_model(home: Path) -> str | None:
    """The model ``$CODEX_HOME/config.toml`` sets (its top-level ``model``), or None."""
    try:
        data = tomllib.loads((home / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    model = data.get("model")
    return model if isinstance(model, str) and model else None


@dataclass(frozen=True)
class _Prepared:
    """What ``prepare`` found for one request."""

    schema_file: Path | None
    baseline: dict[str, int] | None
    model: str | None = None  # the model it runs: the request's, else its config's


class CodexParser(Parser):
    """``codex exec --json`` lines to events. ``baselines`` maps a resumed thread to its
    token totals before this run (None: unknown), so the usage reported is this turn's."""

    name: ClassVar[str] = "codex"
    NORMAL_STOPS: ClassVar[frozenset[str]] = frozenset({"end_turn"})  # turn.completed

    def __init__(self, baselines: dict[str, dict[str, int] | None] | None = None, *,
                 model: str | None = None) -> None:
        super().__init__()
        self._baselines = baselines if baselines is not None else {}
        self._model = model  # said with the usage: what prices it (its events never say)
        self._baseline: dict[str, int] | None = None
        self._resumed = False
        self._started: set[str] = set()  # items whose tool_call was said
        self._last_error: str | None = None
        self._turn_texts: list[str] = []

    def _note(self, event: AgentEvent) -> None:
        # A warning (an error item, a retry notice) is shown, not the run's error.
        if event.kind == "error" and not event.data.get("fatal", True):
            return
        super()._note(event)

    def read(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """The events of one decoded line."""
        kind = obj.get("type")
        if kind == "thread.started":
            thread = str(obj["thread_id"])
            self._baseline = self._baselines.get(thread)
            self._resumed = thread in self._baselines
            return [AgentEvent("session", "", {"session_id": thread})]
        if kind == "turn.started":
            self._turn_texts = []
            return []
        if kind in ("item.started", "item.updated", "item.completed"):
            item = obj["item"]
            if not isinstance(item, dict):
                raise TypeError("item is not an object")
            return self._item(str(kind).split(".", 1)[1], item)
        if kind == "turn.completed":
            usage = self._usage(obj.get("usage") or {})
            text = self._turn_texts[-1] if self._turn_texts else ""
            return [AgentEvent("usage", "", usage),
                    AgentEvent("finished", text, {"stop_reason": "end_turn"})]
        if kind == "turn.failed":
            error = obj.get("error") or {}
            message = str(error.get("message") if isinstance(error, dict) else error)
            if message == self._last_error:
                return []  # the top-level error line already said it
            return [self._error(message)]
        if kind == "error":
            message = str(obj.get("message", ""))
            if message.startswith("Reconnecting..."):
                if "waiting for network" in message:
                    # Codex waits for the network without end (stream_max_retries does
                    # not cover a refused connection): the server is not there.
                    return [self._error(message, unreachable=True)]
                return [AgentEvent("error", message, {"fatal": False, "retry": True})]
            return [self._error(message)]
        return super().read(obj)

    def _error(self, message: str, **extra: Any) -> AgentEvent:
        self._last_error = message
        return AgentEvent("error", f"codex: {message}", {"fatal": True, **extra})

    def _usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        totals = {key: int(usage.get(key) or 0) for key in USAGE_KEYS}
        scope = "turn"
        if self._baseline is not None:
            # After `exec resume` the CLI reports the whole thread's totals.
            totals = {key: max(totals[key] - self._baseline.get(key, 0), 0)
                      for key in USAGE_KEYS}
        elif self._resumed:
            scope = "thread"
        return {"input_tokens": totals["input_tokens"],
                "output_tokens": totals["output_tokens"],
                "cached_tokens": totals["cached_input_tokens"],
                "reasoning_tokens": totals["reasoning_output_tokens"],
                "scope": scope, **({"model": self._model} if self._model else {})}

    def _item(self, phase: str, item: dict[str, Any]) -> list[AgentEvent]:
        kind = item.get("type")
        item_id = str(item.get("id", ""))
        if kind == "agent_message":
            if phase != "completed":
                return []
            text = str(item.get("text", ""))
            self._turn_texts.append(text)
            return [AgentEvent("text", text, {"id": item_id})]
        if kind == "reasoning":
            if phase != "completed":
                return []
            return [AgentEvent("thinking", str(item.get("text", "")), {"id": item_id})]
        if kind == "todo_list":
            steps = item.get("items") or []
            plan = "\n".join(f"[{'x' if step.get('completed') else ' '}] {step.get('text', '')}"
                             for step in steps if isinstance(step, dict))
            return [AgentEvent("thinking", plan, {"id": item_id, "plan": steps})]
        if kind == "error":
            return [AgentEvent("error", str(item.get("message", "")),
                               {"id": item_id, "fatal": False})]
        call = self._tool_input(kind, item)
        if call is None:
            return [AgentEvent("raw", "", {"reason": f"unknown item type {kind!r}"})]
        name, tool_input = call
        events: list[AgentEvent] = []
        if item_id not in self._started:
            self._started.add(item_id)
            events.append(AgentEvent("tool_call", "", {"name": name, "input": tool_input,
                                                       "id": item_id}))
        if phase == "completed":
            events.append(self._tool_result(kind, item_id, item))
        return events

    @staticmethod
    def _tool_input(kind: Any, item: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if kind == "command_execution":
            return "command_execution", {"command": item.get("command", "")}
        if kind == "file_change":
            return "file_change", {"changes": item.get("changes") or []}
        if kind == "mcp_tool_call":
            return (f"{item.get('server', '?')}.{item.get('tool', '?')}",
                    {"arguments": item.get("arguments")})
        if kind == "web_search":
            return "web_search", {"query": item.get("query", "")}
        return None

    @staticmethod
    def _tool_result(kind: Any, item_id: str, item: dict[str, Any]) -> AgentEvent:
        status = str(item.get("status") or "completed")
        data: dict[str, Any] = {"id": item_id, "status": status,
                                "is_error": status in ("failed", "declined")}
        text = ""
        if kind == "command_execution":
            code = item.get("exit_code")
            data["exit_code"] = code
            data["is_error"] = data["is_error"] or (code is not None and code != 0)
            text = str(item.get("aggregated_output") or "")
        elif kind == "file_change":
            changes = [change for change in item.get("changes") or []
                       if isinstance(change, dict)]
            data["changes"] = changes
            text = "\n".join(f"{change.get('kind', '?')} {change.get('path', '?')}"
                             for change in changes)
        elif kind == "mcp_tool_call":
            error = item.get("error")
            if error:
                data["is_error"] = True
                text = str(error.get("message") if isinstance(error, dict) else error)
            else:
                result = item.get("result") or {}
                blocks = result.get("content") if isinstance(result, dict) else None
                text = "\n".join(str(block.get("text", "")) for block in blocks or []
                                 if isinstance(block, dict)) or json.dumps(result)
        return AgentEvent("tool_result", bounded(text), data)


class CodexBackend(Backend):
    """``codex exec --json``: sandboxed to the workspace, never asking for approval."""

    name: ClassVar[str] = "codex"
    binary: ClassVar[str] = "codex"
    package: ClassVar[str] = "@openai/codex"
    stdin: ClassVar[bool] = False  # it reads stdin unless that is /dev/null

    def __init__(self) -> None:
        # A resumed thread's token totals before its run, found by prepare (or argv),
        # used by the parser when the thread starts (keyed by thread: runs may overlap).
        self._baselines: dict[str, dict[str, int] | None] = {}
        # What prepare found for each request: (the schema file, the thread's totals).
        self._prepared: PerRequest[_Prepared] = PerRequest()

    async def prepare(self, request: AgentRequest) -> None:
        """Write the schema file and read a resumed thread's totals so far (a scan of
        ``~/.codex/sessions``), off the event loop."""
        self._prepared.put(request, await asyncio.to_thread(self._prepare, request))

    @staticmethod
    def _prepare(request: AgentRequest) -> _Prepared:
        schema_file = None
        if request.schema is not None and request.state_dir is not None:
            request.state_dir.mkdir(parents=True, exist_ok=True)
            schema_file = request.state_dir / "codex-output-schema.json"
            schema_file.write_text(json.dumps(request.schema), encoding="utf-8")
        baseline = (thread_usage(codex_home(request), request.session)
                    if request.session else None)
        return _Prepared(schema_file, baseline,
                         request.model or configured_model(codex_home(request)))

    def argv(self, request: AgentRequest) -> list[str]:
        """``exec [resume] --json`` with the policy, the model, the instructions, the
        schema file and the request's own args; the prompt after ``--``."""
        command = ["exec", "resume"] if request.session else ["exec"]
        options = [
            "--json", "--skip-git-repo-check",
            # exec cannot ask anyone: "never" runs what the sandbox allows, refuses
            # the rest; "untrusted" aborts in 0.171.0.
            "-c", 'approval_policy="never"',
            # A config key, not --sandbox: `exec resume` has no --sandbox flag. Read
            # only: the sandbox refuses every write, patches and commands alike.
            "-c", 'sandbox_mode="read-only"' if request.read_only
            else 'sandbox_mode="workspace-write"',
            "-c", "check_for_update_on_startup=false",
            "-c", "analytics.enabled=false",
            "-c", "feedback.enabled=false",
        ]
        if request.permissions.decide("network") == "allow" and not request.read_only:
            options += ["-c", "sandbox_workspace_write.network_access=true"]
        if request.permissions.decide("web_search") != "allow":
            options += ["-c", 'web_search="disabled"']
        if request.model:
            options += ["-m", request.model]
        if request.instructions:
            options += ["-c", f"developer_instructions={toml_string(request.instructions)}"]
        prepared = self._prepared.get(request)
        if prepared is None:  # not prepared: the same work, here
            prepared = self._prepare(request)
        prompt = request.prompt
        if request.schema is not None:
            if prepared.schema_file is not None:
                options += ["--output-schema", str(prepared.schema_file)]
            else:
                prompt += ("\n\nAnswer with JSON only, fitting this JSON schema:\n"
                           + json.dumps(request.schema))
        positional = [prompt]
        if request.session:
            positional = [request.session, prompt]
            # None: resumed, but its totals so far are unknown (reported as the thread's).
            self._baselines[request.session] = prepared.baseline
        return [*command, *options, *request.args, "--", *positional]

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """No Rust backtraces (an error is one line on stderr, not a stack)."""
        return {"RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0", "NO_COLOR": "1"}

    def exit_line(self, stderr: str) -> str | None:
        """Its ``error:`` line (clap prints the usage and "For more information, try
        '--help'." after it, so the last line names nothing)."""
        for line in stderr.splitlines():
            flat = " ".join(line.split())
            if flat.lower().startswith("error:"):
                return flat
        return None

    def done(self, event: AgentEvent) -> bool:
        """The turn is over; or the model server cannot be reached (Codex would wait
        for it without end)."""
        return event.kind == "finished" or bool(
            event.kind == "error" and event.data.get("unreachable"))

    def parser(self) -> CodexParser:
        """A parser that knows the resumed threads' totals so far."""
        return CodexParser(self._baselines)

    def parser_for(self, request: AgentRequest) -> CodexParser:
        """A parser that also knows the model the request runs (for its usage)."""
        prepared = self._prepared.get(request)
        return CodexParser(self._baselines, model=request.model or (
            prepared.model if prepared is not None else None))
