"""A coding-agent backend: how one CLI is started on a prompt in the workspace, how its
output lines become normalised events, and how it is asked to stop.

Every backend (``claude``, ``codex``, ``gemini``, ``opencode``, ``acp``) is one small
module with one ``Backend`` subclass. ``run_agent`` (``agents/runner.py``) does the
rest for all of them: the process group, the bounded line stream, the timeout, and the
cancel that escalates from the protocol's own cancel to SIGINT to SIGKILL.

The normalised events (``AgentEvent.kind``), the same for every backend:
- ``session``: the backend's session started; ``data["session_id"]`` resumes it.
- ``text``: the agent's message text (a whole message, chunks joined).
- ``thinking``: its reasoning, when the backend shows it.
- ``tool_call``: ``data`` has ``name``, ``input`` and the backend's ``id``.
- ``tool_result``: ``data`` has ``id``, ``is_error``; ``text`` the output (bounded).
- ``permission``: the agent asked to use a tool; ``data`` has ``name``, ``input`` and the
  ``decision`` taken (``allow`` or ``deny``).
- ``usage``: ``data`` has ``input_tokens``, ``output_tokens``, ``cached_tokens`` and
  ``cost_usd`` when the backend gives them.
- ``error``: what went wrong, in one line (``text``).
- ``finished``: the turn ended; ``data["stop_reason"]``, ``text`` the final answer.
- ``raw``: a line the parser does not know (a newer CLI's event type, a stray line):
  kept and shown, never fatal.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from sisyphus_tui.errors import SisyphusError

if TYPE_CHECKING:
    from sisyphus_tui.agents.runner import AgentResult

KINDS = ("session", "text", "thinking", "tool_call", "tool_result", "permission", "usage",
         "error", "finished", "raw")
RAW_MAX_CHARS = 65536  # AGENT_OUTPUT.raw's bound
TEXT_MAX_CHARS = 16384  # a tool result's text kept in the log
# What the runner appends to a line over its bound (process._Lines).
TRUNCATED_RE = re.compile(r" \[\.\.\. (\d+) more bytes of this line dropped\]$")
# A permission entry with an argument pattern, Claude's rule syntax: ``Bash(pytest*)``.
RULE_RE = re.compile(r"^([^()]+)\((.*)\)$", re.S)
# The input field a ``Tool(pattern)`` entry is matched against, first present wins.
SUBJECT_KEYS = ("command", "file_path", "path", "url", "pattern", "query")
# What makes a shell command more than one command: an allow pattern never covers it.
SHELL_OPERATORS = re.compile(r"[;&|`<>\n]|\$\(")


class AgentUnavailable(SisyphusError):
    """The agent cannot be run here: its binary is missing, or its version is wrong.
    About the setup, not the message being handled (``not_the_message``): never a
    reason to set that message aside."""

    not_the_message = True


@dataclass(frozen=True)
class AgentEvent:
    """One normalised thing an agent said or did."""

    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown agent event kind {self.kind!r}")


def truncated(line: str) -> int | None:
    """How many bytes the runner dropped from ``line`` (cut at its bound), or None if
    the line is whole."""
    cut = TRUNCATED_RE.search(line.rstrip("\r\n"))
    return int(cut.group(1)) if cut is not None else None


def truncated_event(line: str) -> AgentEvent | None:
    """The ``raw`` event of a line the runner cut at its bound (what is left of it,
    bounded, and how much was dropped), or None if the line is whole."""
    stripped = line.rstrip("\r\n")
    cut = TRUNCATED_RE.search(stripped)
    if cut is None:
        return None
    return AgentEvent("raw", stripped[:min(cut.start(), TEXT_MAX_CHARS)],
                      {"reason": f"line over the bound: {cut.group(1)} bytes dropped",
                       "dropped_bytes": int(cut.group(1))})


def subject_of(tool_input: Mapping[str, Any] | None) -> str | None:
    """What a tool call acts on: its command, else its path, url, pattern or query (the
    first present as text), or None."""
    for key in SUBJECT_KEYS:
        value = (tool_input or {}).get(key)
        if isinstance(value, str):
            return value
    return None


def _rule_matches(rule: str, tool: str, tool_input: Mapping[str, Any] | None,
                  allowing: bool = False) -> bool:
    """Whether one ``allow``/``deny`` entry covers this call: ``*``, a tool's name, or
    ``Tool(pattern)`` matched against the call's command (or path, url...): an
    ``fnmatch`` pattern, or Claude's ``prefix:*`` form (the command starts with
    ``prefix``). Names match case-sensitively, as every CLI names its tools. An allow
    pattern never covers a command that chains, pipes, substitutes or redirects
    (``echo hi; rm x`` is no ``echo*``)."""
    if rule == "*" or rule == tool:
        return True
    found = RULE_RE.match(rule)
    if found is None or found.group(1).strip() != tool:
        return False
    pattern = found.group(2)
    subject = subject_of(tool_input)
    if subject is None:
        return False
    subject = subject.strip()
    if allowing and isinstance((tool_input or {}).get("command"), str) and \
            SHELL_OPERATORS.search(subject):
        return False
    if pattern.endswith(":*"):
        prefix = pattern[:-2]
        return subject == prefix or subject.startswith(prefix + " ")
    return fnmatch.fnmatchcase(subject, pattern)


@dataclass(frozen=True)
class Question:
    """A tool call the agent asks to make, that no rule decided: put to a person."""

    request: str  # the backend's id of the request
    tool: str
    input: dict[str, Any]
    reason: str = ""  # why the CLI asks, as it says
    # What an "always" answer allows from now on, when not the tool's name: an ACP
    # call's kind (``execute``; its title is the command itself, never the same twice).
    kind: str | None = None


@dataclass(frozen=True)
class Answer:
    """The answer to a Question: ``allow`` or ``deny`` (``message`` is said to the agent
    with a deny), ``always``: the tool is allowed for the rest of the run; ``by`` who
    answered (``human``, ``timeout``, ``policy``)."""

    decision: str
    always: bool = False
    message: str = ""
    by: str = "policy"


# How a request puts a Question to a person (the supervisor's; None: nobody to ask,
# the tool is denied).
Asker = Callable[[Question], Awaitable[Answer]]


@dataclass(frozen=True)
class Permissions:
    """What an agent may do without asking: edit files inside its workspace (unless
    the request is ``read_only``); other tools as listed, ``deny`` over ``allow`` over
    ``ask``; anything no rule names asks (``decide`` says ``ask``: the runner puts it to
    the request's asker, and with none it is denied).

    An entry is ``*`` (every tool), a tool's name as its CLI calls it (``Bash``,
    ``run_shell_command``...), or ``Tool(pattern)``: that tool only for a call whose
    command (else ``file_path``, ``path``, ``url``, ``pattern``, ``query``) matches
    ``pattern``, an ``fnmatch`` pattern (``Bash(pytest*)``) or Claude's ``prefix:*``
    (``Bash(git diff:*)``). A pattern in ``deny`` denies only the matching calls; a
    bare name in ``deny`` denies the tool whatever ``allow`` says. Claude also gets
    the lists as its own ``--allowedTools``/``--disallowedTools`` rules; the other
    CLIs' own rule files take the bare names only."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    ask: tuple[str, ...] = ()

    def denies(self, tool: str, tool_input: Mapping[str, Any] | None = None) -> bool:
        """Whether a ``deny`` entry names this call (not merely: nothing allows it)."""
        return any(_rule_matches(rule, tool, tool_input) for rule in self.deny
                   if rule != "*")

    def asks(self, tool: str, tool_input: Mapping[str, Any] | None = None) -> bool:
        """Whether an ``ask`` entry names this call (it asks whatever ``allow`` says)."""
        return any(_rule_matches(rule, tool, tool_input) for rule in self.ask)

    def decide(self, tool: str, tool_input: Mapping[str, Any] | None = None) -> str:
        """``allow``, ``deny`` or ``ask`` for a tool that asked (``tool_input``: its
        arguments, for the ``Tool(pattern)`` entries). An ``ask`` entry makes a call
        ask even where an ``allow`` pattern would cover it."""
        if self.denies(tool, tool_input):
            return "deny"
        if self.asks(tool, tool_input):
            return "ask"
        if any(_rule_matches(rule, tool, tool_input, allowing=True) for rule in self.allow):
            return "allow"
        return "ask"


@dataclass(frozen=True)
class AgentRequest:
    """One prompt to one agent, in one workspace."""

    prompt: str
    workspace: Path
    session: str | None = None  # the backend session to resume
    instructions: str = ""  # appended to the agent's system prompt
    model: str | None = None
    thinking: str = "off"
    schema: dict[str, Any] | None = None  # a JSON schema the final answer must fit
    permissions: Permissions = Permissions()
    # The agent may read the workspace but not change it (planning, reviewing,
    # research): each backend has its CLI refuse edits (and what else it can refuse).
    read_only: bool = False
    args: tuple[str, ...] = ()  # extra arguments, from the config
    env: Mapping[str, str] = field(default_factory=dict)  # over the inherited environment
    command: tuple[str, ...] = ()  # the command to start (ACP; or a binary's path)
    state_dir: Path | None = None  # where the backend may keep files of its own
    timeout_s: float = 1800.0  # the turn's, not counting the time a person took to answer
    grace_s: float = 5.0  # between the steps of a cancel
    # Who answers what ``permissions`` leaves to ask (None: nobody, it is denied).
    ask: Asker | None = field(default=None, compare=False, repr=False)
    # The prompt for a new session, should ``session`` not come back (a resumed prompt
    # assumes the conversation it continues; a new session needs it told): made only
    # then. None: the same prompt.
    fresh_prompt: Callable[[], Awaitable[str]] | None = field(default=None, compare=False,
                                                              repr=False)


class Parser:
    """Turns one run's output lines into events; keeps what the run said so far. A line
    it cannot read is a ``raw`` event, never an exception; a line the runner cut at its
    bound is a ``raw`` event saying so. A turn that finishes with a stop reason that is
    not ``normal_stop`` is preceded by an ``error`` event (``"NAME stopped: REASON"``),
    so the run is not ``ok``."""

    name: ClassVar[str] = "agent"  # said in the error of an abnormal stop
    # The stop reasons of a turn that ended as it should (override per CLI).
    NORMAL_STOPS: ClassVar[frozenset[str]] = frozenset(
        {"end_turn", "stop", "completed", "success", "tool_use", "stop_sequence"})

    def __init__(self) -> None:
        self.session: str | None = None
        self.final_text: str | None = None
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.usage: dict[str, Any] = {}
        self.texts: list[str] = []  # every message text, in order

    def feed(self, line: str) -> list[AgentEvent]:
        """The events of one stdout line (JSON decoded here; the subclass reads it)."""
        cut = truncated_event(line)
        if cut is not None:
            return [cut]
        stripped = line.strip()
        if not stripped:
            return []
        try:
            obj = json.loads(stripped)
        except ValueError:
            return [AgentEvent("raw", stripped[:TEXT_MAX_CHARS], {"reason": "not JSON"})]
        if not isinstance(obj, dict):
            return [AgentEvent("raw", stripped[:TEXT_MAX_CHARS], {"reason": "not an object"})]
        try:
            events = self.read(obj)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return [AgentEvent("raw", stripped[:TEXT_MAX_CHARS],
                               {"reason": f"unreadable {obj.get('type', '?')!s}: {exc}"})]
        return self.noted(events)

    def noted(self, events: list[AgentEvent]) -> list[AgentEvent]:
        """``events`` taken note of (session, texts, usage, error, stop reason), with
        an ``error`` event put before a ``finished`` one that stopped abnormally."""
        out: list[AgentEvent] = []
        for event in events:
            if event.kind == "finished":
                reason = str(event.data.get("stop_reason") or "end_turn")
                if self.error is None and not self.normal_stop(reason):
                    stopped = AgentEvent("error", f"{self.name} stopped: {reason}",
                                         {"stop_reason": reason})
                    self._note(stopped)
                    out.append(stopped)
            self._note(event)
            out.append(event)
        return out

    def normal_stop(self, reason: str) -> bool:
        """Whether a turn that stopped for ``reason`` ended as it should (else the run
        is an error: out of tokens, refused, cut short)."""
        return reason in self.NORMAL_STOPS

    def read(self, obj: dict[str, Any]) -> list[AgentEvent]:
        """The events of one decoded JSON line (unknown types: ``raw``)."""
        return [AgentEvent("raw", "", {"reason": f"unknown type {obj.get('type')!r}"})]

    def _note(self, event: AgentEvent) -> None:
        if event.kind == "session" and event.data.get("session_id"):
            self.session = str(event.data["session_id"])
        elif event.kind == "text" and event.text:
            self.texts.append(event.text)
        elif event.kind == "usage":
            self.usage = dict(event.data)
        elif event.kind == "error" and self.error is None:
            self.error = event.text
        elif event.kind == "finished":
            self.stop_reason = str(event.data.get("stop_reason") or "end_turn")
            if event.text:
                self.final_text = event.text

    def answer(self) -> str:
        """The agent's final answer: the finished event's text, else its last message."""
        if self.final_text is not None:
            return self.final_text
        return self.texts[-1] if self.texts else ""


T = TypeVar("T")


class PerRequest(Generic[T]):
    """Values a backend keeps for each request it is running (what ``prepare`` found,
    for ``argv``), keyed by the request's identity: two runs at once never share one;
    a value goes when its request does."""

    def __init__(self) -> None:
        self._values: dict[int, T] = {}

    def put(self, request: AgentRequest, value: T) -> None:
        """Keep ``value`` for ``request`` (until the request is collected)."""
        key = id(request)
        if key not in self._values:
            weakref.finalize(request, self._values.pop, key, None)
        self._values[key] = value

    def get(self, request: AgentRequest) -> T | None:
        """What was kept for ``request``, or None."""
        return self._values.get(id(request))

    def __contains__(self, request: AgentRequest) -> bool:
        return id(request) in self._values

    def __len__(self) -> int:
        return len(self._values)


class Backend(ABC):
    """One coding-agent CLI."""

    name: ClassVar[str]
    binary: ClassVar[str]  # the executable looked up on PATH
    package: ClassVar[str] = ""  # where it comes from, for the "not installed" line
    stdin: ClassVar[bool] = False  # whether it reads a pipe (else /dev/null)
    # Whether its stdin is closed once the turn is over (``done``): a CLI that reads
    # prompts from stdin until its end (claude's stream-json) only exits then.
    close_stdin_when_done: ClassVar[bool] = False
    # Whether its stdin is closed once ``first_input`` is written: a CLI that reads
    # its prompt from stdin until its end (opencode run) only starts then.
    close_stdin_after_input: ClassVar[bool] = False

    def executable(self, request: AgentRequest) -> str:
        """The binary's full path: ``request.command``'s first word, else PATH
        (AgentUnavailable names what is missing and where it comes from)."""
        name = request.command[0] if request.command else self.binary
        path_var = request.env.get("PATH", os.environ.get("PATH", ""))
        found = shutil.which(name, path=path_var)
        if found is None:
            where = f" (install {self.package})" if self.package else ""
            raise AgentUnavailable(f"{self.name}: {name!r} is not installed or not on "
                                   f"PATH{where}")
        return found

    async def prepare(self, request: AgentRequest) -> None:
        """What must be done before ``argv`` and ``environment`` that touches the disk
        (files the CLI is pointed at, state it read): awaited by ``run_agent`` before
        ``argv``, its blocking parts off the event loop. A backend that was not
        prepared does the same work in ``argv``/``environment``, synchronously."""
        return None

    @abstractmethod
    def argv(self, request: AgentRequest) -> list[str]:
        """The arguments for one prompt (``run_agent`` puts the executable, and the rest
        of ``request.command``, before them)."""

    def environment(self, request: AgentRequest) -> dict[str, str]:
        """The variables it gets beyond the inherited ones and the request's own (turn
        off telemetry and update checks); the request's win."""
        return {}

    def first_input(self, request: AgentRequest) -> bytes | None:
        """What to write to its stdin once started (with ``stdin``)."""
        return None

    def reply(self, event: AgentEvent, request: AgentRequest) -> bytes | None:
        """What to write back for an event (a permission answer), or None."""
        return None

    def interrupt(self) -> bytes | None:
        """The protocol's own cancel, written to stdin (None: it has none: SIGINT)."""
        return None

    def done(self, event: AgentEvent) -> bool:
        """Whether the turn is over once this event is seen (the CLI may linger: it
        is then asked to stop)."""
        return False

    @abstractmethod
    def parser(self) -> Parser:
        """A fresh parser for one run."""

    def parser_for(self, request: AgentRequest) -> Parser:
        """A fresh parser for one run of ``request`` (one that needs the request, e.g.
        to decide a permission in the event it emits); by default ``parser()``."""
        return self.parser()

    async def session(self, request: AgentRequest,
                      on_event: Callable[[AgentEvent], Awaitable[None] | None],
                      ) -> AgentResult | None:
        """A backend that is not a stream of JSON lines (ACP: a JSON-RPC peer) runs the
        whole request here and returns its result; None: ``run_agent`` reads lines."""
        return None

    def exit_line(self, stderr: str) -> str | None:
        """The line of its stderr (its first lines, then its last) that says why it
        exited non-zero (None: the runner takes the last line; but a CLI may print its
        usage after the error)."""
        return None

    def version_argv(self) -> list[str]:
        """The arguments that print its version."""
        return ["--version"]


def bounded(text: str, limit: int = TEXT_MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying so."""
    if len(text) <= limit:
        return text
    return text[:limit] + f" [... {len(text) - limit} more characters]"
