"""The coding-agent adapter: what it costs to turn a CLI's JSON lines into rows of the
log, and how long a line the agent prints takes to reach the TUI's screen; each figure
measured against its peer in the same run on this machine.

Run from the project root::

    uv run python -m benchmarks.agents            # full run (about 2 minutes on 2 cores)
    uv run python -m benchmarks.agents --quick    # smaller run (about 25 s)

1. Adapter cost. A realistic Claude Code ``stream-json`` session (``--lines`` lines: the
   ``system`` init, assistant lines with one ``text``/``thinking``/``tool_use`` block
   each, ``user`` lines with the tool's ``tool_result`` and its ``tool_use_result``, the
   closing ``result``; tool results of a few KB, file contents taken from this project's
   own sources) is written to a file, then read, interleaved, ``--reps`` times each:
   (a) the limit: the file read raw (open, iterate lines, ``json.loads`` each);
   (b) parse only: the same lines through ``ClaudeParser.feed``;
   (c0) the runner without a store: the real ``run_agent`` on a real ``cat FILE`` child
        (its own process group, real pipes, the Claude parser), ``on_event`` a no-op;
   (c) the whole adapter: the same, ``on_event`` appending each event as AGENT_OUTPUT to
       a real SQLite store exactly as ``run_solo`` does (one awaited ``store.append``
       per event, keyed by agent, message and sequence);
   (c2) as (c), the appends not awaited one by one (a task per append: the store's
        group commit batches what is pending);
   (c3) as (c), the events buffered and written by one flusher with ``append_many``
        (one batch in flight).
2. Latency, line on the agent's stdout to its row on the TUI's screen. A small Python
   script is the "CLI": it prints claude-shaped lines (text, thinking, tool results of a
   few KB), each carrying a marker, one every 20-50 ms, stamping ``time.time()`` just
   before each write + flush; the real runner, the Claude parser and the AGENT_OUTPUT
   append put them in the log; the real app (``SisyphusApp``) runs headless
   (``App.run_test(size=(120, 40))``) in another process on the same database and stamps
   the first frame handed to its driver that shows each marker. The peer, interleaved in
   the same run on the same app: the test process appends the same AGENT_OUTPUT events
   itself (no agent, no parser), stamped just before ``append()``.
3. A markdown summary table, ready for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stream import (
    PROJECT_ROOT,
    Runs,
    count_rows,
    environment,
    load_average,
    out,
    percentile,
    remove_db,
)
from benchmarks.tui import HEIGHT, WIDTH, emit, emitted_segments, read_line
from sisyphus_tui.agents.base import AgentEvent, AgentRequest
from sisyphus_tui.agents.claude import ClaudeBackend, ClaudeParser
from sisyphus_tui.agents.runner import AgentResult, run_agent
from sisyphus_tui.stream import Event, EventStore, NewEvent, open_store
from sisyphus_tui.stream.sqlite import POLL_INTERVAL_S
from sisyphus_tui.tui.app import REFRESH_HZ

AGENT = "executor-3"
MODEL = "claude-sonnet-4-5-20250929"
VERSION = "2.1.197"
MARKER = re.compile(r"MK([ad])(\d{5})")
GAP_S = (0.020, 0.050)  # between two lines of the latency run
TOOLS = ["Task", "Bash", "Glob", "Grep", "ExitPlanMode", "Read", "Edit", "MultiEdit",
         "Write", "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput",
         "KillShell", "SlashCommand"]
TOOL_WEIGHTS = {"Read": 34, "Bash": 24, "Edit": 15, "Grep": 12, "Glob": 6, "Write": 5,
                "TodoWrite": 4}
WORDS = ("the tests pass now so the next step is the repository layer where the query "
         "builder still concatenates strings instead of binding parameters and the "
         "migration for the email index has not run on the fixture database yet").split()


def dumps(obj: Any) -> str:
    """One line as Claude Code (Node's JSON.stringify) writes it: compact, UTF-8."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# -- 1. a realistic stream-json session ------------------------------------------------


class Session:
    """Claude Code's stream-json lines for one long session, made from a seeded RNG and
    this project's own source files (what its Read, Grep and Edit results show)."""

    def __init__(self, seed: int, workspace: str = "/work/ws") -> None:
        self.rng = random.Random(seed)
        self.cwd = workspace
        self.session = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        sources = sorted((PROJECT_ROOT / "sisyphus_tui").rglob("*.py"))
        self.files = [(str(p.relative_to(PROJECT_ROOT)), p.read_text().splitlines())
                      for p in sources if p.stat().st_size > 2000]
        self.calls = 0
        self.turns = 0

    def _id(self, prefix: str) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return prefix + "".join(self.rng.choices(alphabet, k=24))

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def prose(self, low: int, high: int) -> str:
        """Words of an agent's message, ``low``-``high`` characters."""
        size = self.rng.randint(low, high)
        words: list[str] = []
        length = 0
        while length < size:
            word = self.rng.choice(WORDS)
            words.append(word)
            length += len(word) + 1
        return " ".join(words).capitalize() + "."

    def _file(self, low: int, high: int) -> tuple[str, str, int, int]:
        """A slice of a real source file of ``low``-``high`` characters, numbered the way
        Claude Code's Read shows it (``     1→...``): (path, shown, first, count)."""
        path, lines = self.rng.choice(self.files)
        size = self.rng.randint(low, high)
        start = self.rng.randrange(max(len(lines) - 20, 1))
        shown: list[str] = []
        length = 0
        for number in range(start, len(lines)):
            row = f"{number + 1:>6}→{lines[number]}"
            shown.append(row)
            length += len(row) + 1
            if length >= size:
                break
        return f"{self.cwd}/{path}", "\n".join(shown), start + 1, len(shown)

    def init(self) -> str:
        return dumps({
            "type": "system", "subtype": "init", "cwd": self.cwd, "session_id": self.session,
            "tools": TOOLS, "mcp_servers": [], "model": MODEL,
            "permissionMode": "acceptEdits",
            "slash_commands": ["compact", "context", "cost", "init", "pr-comments",
                               "release-notes", "todos", "review", "security-review"],
            "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": VERSION,
            "output_style": "default", "agents": ["general-purpose", "statusline-setup",
                                                  "output-style-setup", "Explore"],
            "skills": [], "plugins": [], "uuid": self._uuid()})

    def _assistant(self, block: dict[str, Any], message_id: str) -> str:
        return dumps({
            "type": "assistant", "message": {
                "model": MODEL, "id": message_id, "type": "message", "role": "assistant",
                "content": [block], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": self.rng.randint(2, 9),
                          "cache_creation_input_tokens": self.rng.randint(0, 4000),
                          "cache_read_input_tokens": self.rng.randint(12000, 90000),
                          "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                             "ephemeral_1h_input_tokens": 0},
                          "output_tokens": self.rng.randint(1, 40),
                          "service_tier": "standard"},
                "context_management": None},
            "parent_tool_use_id": None, "session_id": self.session, "uuid": self._uuid()})

    def text(self, text: str | None = None) -> str:
        return self._assistant({"type": "text", "text": text or self.prose(60, 700)},
                               self._id("msg_01"))

    def thinking(self, text: str | None = None) -> str:
        signature = "".join(self.rng.choices(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            k=self.rng.randint(300, 1200)))
        return self._assistant({"type": "thinking", "thinking": text or self.prose(150, 1500),
                                "signature": signature}, self._id("msg_01"))

    def tool(self, name: str) -> tuple[str, str]:
        """A tool_use line and its tool_result line (a few KB for reads, edits, runs)."""
        tool_id = self._id("toolu_01")
        rng = self.rng
        extra: dict[str, Any]
        error = rng.random() < 0.04
        if name == "Read":
            path, shown, first, count = self._file(800, 8000)
            tool_input: dict[str, Any] = {"file_path": path}
            content = shown
            extra = {"type": "text", "file": {"filePath": path, "content": shown,
                                              "numLines": count, "startLine": first,
                                              "totalLines": first + count + 40}}
        elif name == "Bash":
            tool_input = {"command": rng.choice(["uv run pytest -q -x tests/test_repo.py",
                                                 "git diff --stat", "uv run ruff check .",
                                                 "ls -la src/app/db"]),
                          "description": "Run the checks"}
            _, shown, _, _ = self._file(100, 4000)
            content = shown.replace("→", " ")
            extra = {"stdout": content, "stderr": "", "interrupted": False,
                     "isImage": False}
        elif name == "Edit":
            path, original, _, _ = self._file(1500, 8000)
            old = self.prose(20, 120)
            new = self.prose(20, 160)
            tool_input = {"file_path": path, "old_string": old, "new_string": new}
            _, snippet, _, _ = self._file(300, 1200)
            content = (f"The file {path} has been updated. Here's the result of running "
                       f"`cat -n` on a snippet of the edited file:\n{snippet}")
            extra = {"filePath": path, "oldString": old, "newString": new,
                     "originalFile": original, "structuredPatch": [
                         {"oldStart": 10, "oldLines": 3, "newStart": 10, "newLines": 3,
                          "lines": [f"-{old}", f"+{new}"]}],
                     "userModified": False, "replaceAll": False}
        elif name == "Grep":
            _, shown, _, count = self._file(300, 2000)
            tool_input = {"pattern": rng.choice(WORDS), "output_mode": "content", "-n": True}
            content = shown
            extra = {"mode": "content", "numFiles": rng.randint(1, 6), "filenames": [],
                     "content": shown, "numLines": count}
        elif name == "Glob":
            names = [f"{self.cwd}/{p}" for p, _ in rng.sample(self.files, 8)]
            tool_input = {"pattern": "**/*.py"}
            content = "\n".join(names)
            extra = {"filenames": names, "durationMs": rng.randint(3, 40),
                     "numFiles": len(names), "truncated": False}
        elif name == "Write":
            path, shown, _, _ = self._file(200, 3000)
            body = re.sub(r"^ *\d+→", "", shown, flags=re.M)
            tool_input = {"file_path": path, "content": body}
            content = f"File created successfully at: {path}"
            extra = {"type": "create", "filePath": path, "content": body,
                     "structuredPatch": []}
        else:  # TodoWrite
            todos = [{"content": self.prose(20, 60), "status": rng.choice(
                ["pending", "in_progress", "completed"]), "activeForm": self.prose(20, 60)}
                for _ in range(rng.randint(2, 6))]
            tool_input = {"todos": todos}
            content = ("Todos have been modified successfully. Ensure that you continue to "
                       "use the todo list to track your progress.")
            extra = {"oldTodos": todos[1:], "newTodos": todos}
        if error:
            content = f"<tool_use_error>{self.prose(40, 200)}</tool_use_error>"
            extra = {"error": content}
        use = self._assistant({"type": "tool_use", "id": tool_id, "name": name,
                               "input": tool_input}, self._id("msg_01"))
        block: dict[str, Any] = {"tool_use_id": tool_id, "type": "tool_result",
                                 "content": content}
        if error:
            block["is_error"] = True
        result = dumps({"type": "user", "message": {"role": "user", "content": [block]},
                        "parent_tool_use_id": None, "session_id": self.session,
                        "uuid": self._uuid(), "tool_use_result": extra})
        return use, result

    def call(self) -> list[str]:
        """One model call: maybe thinking, maybe text, then a tool and its result."""
        self.calls += 1
        lines: list[str] = []
        if self.rng.random() < 0.3:
            lines.append(self.thinking())
        if self.rng.random() < 0.55:
            lines.append(self.text())
        name = self.rng.choices(list(TOOL_WEIGHTS), list(TOOL_WEIGHTS.values()))[0]
        lines.extend(self.tool(name))
        return lines

    def result(self, answer: str = "") -> str:
        usage = {"input_tokens": 40 * self.calls, "cache_creation_input_tokens": 91000,
                 "cache_read_input_tokens": 41000 * self.calls, "output_tokens": 90 *
                 self.calls, "server_tool_use": {"web_search_requests": 0,
                                                 "web_fetch_requests": 0},
                 "service_tier": "standard", "cache_creation": {
                     "ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 91000}}
        cost = 0.004 * self.calls
        return dumps({
            "type": "result", "subtype": "success", "is_error": False,
            "duration_ms": 4100 * self.calls, "duration_api_ms": 3900 * self.calls,
            "num_turns": self.calls, "result": answer or self.prose(80, 400),
            "session_id": self.session, "total_cost_usd": cost, "usage": usage,
            "modelUsage": {MODEL: {"inputTokens": usage["input_tokens"],
                                   "outputTokens": usage["output_tokens"],
                                   "cacheReadInputTokens": usage["cache_read_input_tokens"],
                                   "cacheCreationInputTokens": 91000,
                                   "webSearchRequests": 0, "costUSD": cost,
                                   "contextWindow": 200000}},
            "permission_denials": [], "uuid": self._uuid()})


@dataclass(frozen=True, slots=True)
class SessionFile:
    """The JSONL file of section 1 and what is in it."""

    path: Path
    lines: int
    size: int
    kinds: dict[str, int]
    tool_result_p50: int
    tool_result_p95: int


def build_session(path: Path, lines: int, seed: int) -> SessionFile:
    """``lines`` stream-json lines: init, model calls, the result (a session's shape)."""
    session = Session(seed)
    body = [session.init()]
    while len(body) < lines - 1:
        body.extend(session.call())
    del body[lines - 1:]
    body.append(session.result())
    kinds: dict[str, int] = {}
    results: list[int] = []
    for line in body:
        obj = json.loads(line)
        kind = obj["type"]
        if kind == "assistant":
            kind = f"assistant {obj['message']['content'][0]['type']}"
        elif kind == "user":
            results.append(len(line.encode()))
            kind = "user tool_result"
        kinds[kind] = kinds.get(kind, 0) + 1
    text = "\n".join(body) + "\n"
    path.write_text(text)
    return SessionFile(path, len(body), len(text.encode()), kinds,
                       int(percentile(results, 50)), int(percentile(results, 95)))


# -- 1. the contenders ----------------------------------------------------------------------


class FileBackend(ClaudeBackend):
    """Claude Code's protocol (its parser, its done, its stdin handling) with ``cat FILE``
    as the CLI: the real runner on a real child printing a recorded session."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def executable(self, request: AgentRequest) -> str:
        found = shutil.which("cat")
        assert found is not None
        return found

    def argv(self, request: AgentRequest) -> list[str]:
        return [str(self.path)]


class ScriptBackend(ClaudeBackend):
    """Claude Code's protocol with a Python script as the CLI (section 2)."""

    def __init__(self, script: Path, args: Sequence[str]) -> None:
        self.script = script
        self.args = list(args)

    def executable(self, request: AgentRequest) -> str:
        return sys.executable

    def argv(self, request: AgentRequest) -> list[str]:
        return [str(self.script), *self.args]


def output_payload(message: int, sequence: int, event: AgentEvent) -> dict[str, Any]:
    """AGENT_OUTPUT's payload, as ``run_solo`` and ``Turn.output`` write it."""
    return {"agent": AGENT, "message": message, "sequence": sequence, "kind": event.kind,
            "text": event.text, "data": event.data, "raw": event.raw}


def output_key(message: int, sequence: int) -> str:
    return f"output:{AGENT}:{message}:{sequence}"


async def prepare(store: EventStore) -> int:
    """What ``run_solo`` appends before the run (spawn, registration, the prompt, the
    working status); returns the prompt's offset. Opens the writer (not timed)."""
    await store.append_many([
        {"type": "AGENT_SPAWNED", "actor": "human", "key": f"spawn:{AGENT}",
         "payload": {"agent": AGENT, "role": "agent", "skill": None, "parent": None,
                     "thinking": "off", "brain": "claude", "brain_config": {}}},
        {"type": "AGENT_REGISTERED", "actor": AGENT, "key": f"register:{AGENT}",
         "payload": {"agent": AGENT, "role": "agent"}},
    ])
    message = await store.append("MESSAGE", {"kind": "task", "text": "Go on.", "data": {}},
                                 actor="human", to=AGENT)
    await store.append("STATUS_UPDATE", {"agent": AGENT, "state": "working",
                                         "detail": "claude: Go on."}, actor=AGENT)
    return message


def request_in(workspace: Path) -> AgentRequest:
    return AgentRequest(prompt="Go on.", workspace=workspace, timeout_s=600.0, grace_s=1.0)


@dataclass(frozen=True, slots=True)
class Pass:
    """One timed pass over the file."""

    seconds: float
    lines: int
    events: int


def read_raw(path: Path) -> Pass:
    """(a) open, iterate the lines, ``json.loads`` each."""
    started = time.perf_counter()
    lines = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            json.loads(line)
            lines += 1
    return Pass(time.perf_counter() - started, lines, lines)


def parse_only(path: Path) -> Pass:
    """(b) the same lines through the Claude parser's ``feed``."""
    started = time.perf_counter()
    parser = ClaudeParser()
    lines = events = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            events += len(parser.feed(line.rstrip("\n")))
            lines += 1
    assert parser.stop_reason is not None, "the session's result line was not read"
    return Pass(time.perf_counter() - started, lines, events)


Handler = Callable[[AgentEvent], Awaitable[None] | None]


async def through_runner(tmp: Path, session: SessionFile, mode: str, rep: int) -> Pass:
    """(c0) / (c) / (c2) / (c3): ``run_agent`` on ``cat FILE`` with the Claude parser;
    ``mode`` says what ``on_event`` does with each event. Timed from the call of
    ``run_agent`` until every event is durably in the log (for (c2) / (c3) the last
    appends are awaited after the run); the row count is checked after."""
    backend = FileBackend(session.path)
    request = request_in(tmp)
    if mode == "none":
        events = 0

        def count(event: AgentEvent) -> None:
            nonlocal events
            events += 1

        started = time.perf_counter()
        result = await run_agent(backend, request, count)
        elapsed = time.perf_counter() - started
        check(result, session)
        return Pass(elapsed, session.lines, events)
    db = tmp / f"adapter-{mode}-{rep}.db"
    async with await open_store(db) as store:
        message = await prepare(store)
        sequence = 0
        pending: list[asyncio.Future[int]] = []
        buffer: list[NewEvent] = []
        wake = asyncio.Event()
        finished = False

        async def awaited(event: AgentEvent) -> None:
            nonlocal sequence
            await store.append("AGENT_OUTPUT", output_payload(message, sequence, event),
                               actor=AGENT, key=output_key(message, sequence))
            sequence += 1

        def unawaited(event: AgentEvent) -> None:
            nonlocal sequence
            pending.append(asyncio.ensure_future(store.append(
                "AGENT_OUTPUT", output_payload(message, sequence, event), actor=AGENT,
                key=output_key(message, sequence))))
            sequence += 1

        def buffered(event: AgentEvent) -> None:
            nonlocal sequence
            buffer.append(NewEvent.of("AGENT_OUTPUT", output_payload(message, sequence, event),
                                      actor=AGENT, key=output_key(message, sequence)))
            sequence += 1
            wake.set()

        async def flusher() -> None:
            while True:
                if not buffer:
                    if finished:
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                batch = buffer[:]
                buffer.clear()
                await store.append_many(batch)

        handler: Handler = {"awaited": awaited, "unawaited": unawaited,
                            "append_many": buffered}[mode]
        started = time.perf_counter()
        writer = asyncio.create_task(flusher()) if mode == "append_many" else None
        result = await run_agent(backend, request, handler)
        if pending:
            await asyncio.gather(*pending)
        if writer is not None:
            finished = True
            wake.set()
            await writer
        elapsed = time.perf_counter() - started
        check(result, session)
    rows = count_rows(db) - 4  # the four events of ``prepare``
    assert rows == sequence, f"{mode}: {rows} rows for {sequence} events"
    remove_db(db)
    return Pass(elapsed, session.lines, sequence)


def check(result: AgentResult, session: SessionFile) -> None:
    assert result.ok, (result.error, result.stderr_tail)
    assert result.events >= session.lines, (result.events, session.lines)


@dataclass(slots=True)
class AdapterFigures:
    """Section 1: every pass of every contender."""

    session: SessionFile
    passes: dict[str, list[Pass]] = field(default_factory=dict)

    def lines_per_s(self, name: str) -> Runs:
        return Runs(tuple(p.lines / p.seconds for p in self.passes[name]))

    def events_per_s(self, name: str) -> Runs:
        return Runs(tuple(p.events / p.seconds for p in self.passes[name]))

    def ratio(self, name: str, peer: str = "raw") -> float:
        """Median of the per-rep ratios (the contenders of one rep ran side by side)."""
        return statistics.median(
            (p.lines / p.seconds) / (q.lines / q.seconds)
            for p, q in zip(self.passes[name], self.passes[peer], strict=True))


CONTENDERS = {
    "raw": "(a) the limit: open + iterate lines + json.loads",
    "parse": "(b) parse only: ClaudeParser.feed per line",
    "none": "(c0) run_agent on `cat FILE`, on_event a no-op (runner + pipes + parser)",
    "awaited": "(c) the whole adapter: run_agent + one awaited store.append per event "
               "(as run_solo)",
    "unawaited": "(c2) as (c), appends not awaited one by one (a task each; group commit)",
    "append_many": "(c3) as (c), events buffered, one append_many batch in flight",
}


CHEAP = {"raw": 5, "parse": 5, "none": 3}  # timed passes per rep (the median is kept)


async def bench_adapter(tmp: Path, lines: int, reps: int) -> AdapterFigures:
    built = time.perf_counter()
    session = build_session(tmp / "session.jsonl", lines, seed=3)
    out(f"## 1. Adapter cost: a Claude Code stream-json session of {session.lines:,} lines "
        f"({session.size / 1e6:.1f} MB, built in {time.perf_counter() - built:.1f} s), "
        f"{reps} rep(s) per contender, interleaved (rotating order); in each rep (a) and (b) "
        f"are the median of {CHEAP['raw']} passes, (c0) of {CHEAP['none']}")
    out("   lines: " + ", ".join(f"{k} {v:,}" for k, v in sorted(session.kinds.items())))
    out(f"   tool_result lines: p50 {session.tool_result_p50:,} B, p95 "
        f"{session.tool_result_p95:,} B; mean line {session.size / session.lines:,.0f} B")
    figures = AdapterFigures(session, {name: [] for name in CONTENDERS})
    names = list(CONTENDERS)
    read_raw(session.path)  # warms the page cache (the file was just written: it is)
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            if name in CHEAP:
                # A pass of these lasts well under a second: the median of CHEAP passes,
                # so one stall of another worker on these cores does not make the figure.
                passes = []
                for _ in range(CHEAP[name]):
                    if name == "raw":
                        passes.append(read_raw(session.path))
                    elif name == "parse":
                        passes.append(parse_only(session.path))
                    else:
                        passes.append(await through_runner(tmp, session, name, rep))
                result = sorted(passes, key=lambda p: p.seconds)[len(passes) // 2]
            else:
                result = await through_runner(tmp, session, name, rep)
            figures.passes[name].append(result)
            out(f"   rep {rep + 1} {name:>11}: {result.seconds:7.3f} s, "
                f"{result.lines / result.seconds:>10,.0f} lines/s, "
                f"{result.events / result.seconds:>10,.0f} events/s")
    out()
    for name, label in CONTENDERS.items():
        lines_s, events_s = figures.lines_per_s(name), figures.events_per_s(name)
        ratio = "" if name == "raw" else f", vs (a) {figures.ratio(name):.3f}"
        out(f"   {label}:\n      {lines_s.median:,.0f} lines/s ({lines_s.spread()}), "
            f"{events_s.median:,.0f} events/s{ratio}")
    out(f"   (c) vs (c0): {figures.ratio('awaited', 'none'):.3f}; (c3) vs (c): "
        f"{figures.ratio('append_many', 'awaited'):.1f}x; (c2) vs (c): "
        f"{figures.ratio('unawaited', 'awaited'):.1f}x")
    per_event = statistics.median(p.seconds / p.events for p in figures.passes["awaited"])
    bare = statistics.median(p.seconds / p.events for p in figures.passes["none"])
    out(f"   (c) spends {per_event * 1e3:.3f} ms per event, of which the runner + parser "
        f"(c0) {bare * 1e3:.3f} ms: the rest, {(per_event - bare) * 1e3:.3f} ms, is one "
        f"awaited commit (fsync) per event")
    out()
    return figures


# -- 2. latency: a line on stdout to its row on screen -----------------------------------


AGENT_SCRIPT = r'''
import json, random, sys, time
n, first, seed, stamps_path, low, high, lines_path = sys.argv[1:8]
n, first, seed, low, high = int(n), int(first), int(seed), float(low), float(high)
prompt = sys.stdin.readline()  # the user message, as claude -p reads it
with open(lines_path) as handle:
    lines = json.load(handle)
rng = random.Random(seed)
out = sys.stdout.buffer
out.write((lines["init"] + "\n").encode()); out.flush()
stamps = {}
for i in range(n):
    time.sleep(rng.uniform(low, high))
    marker = "MKa%05d" % (first + i)
    data = (lines["body"][i % len(lines["body"])].replace("MKMARKER", marker) + "\n").encode()
    stamps[marker] = time.time()
    out.write(data); out.flush()
out.write((lines["result"] + "\n").encode()); out.flush()
with open(stamps_path, "w") as handle:
    json.dump(stamps, handle)
'''


def latency_lines(count: int, seed: int) -> dict[str, Any]:
    """The script's lines: an init, ``count`` body lines with ``MKMARKER`` at the start
    of their shown text (text, thinking, tool results of a few KB: what a row shows), and
    the result. The peer appends the events these lines parse into."""
    session = Session(seed)
    body: list[str] = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            body.append(session.text("MKMARKER " + session.prose(60, 400)))
        elif kind == 1:
            body.append(session.thinking("MKMARKER " + session.prose(100, 800)))
        else:
            _, result = session.tool(session.rng.choice(["Read", "Bash", "Grep"]))
            obj = json.loads(result)
            block = obj["message"]["content"][0]
            block.pop("is_error", None)
            block["content"] = "MKMARKER " + str(block["content"])
            body.append(dumps(obj))
    return {"init": session.init(), "body": body, "result": session.result("Done.")}


@dataclass(frozen=True, slots=True)
class Sample:
    """One marked line: wall-clock stamps (time.time()), None where not seen."""

    marker: str
    written: float  # agent: before its write + flush; direct: before append()
    handed: float  # on_event called (direct: = written)
    appended: float  # append() returned (committed)
    arrived: float | None  # the app's tail yielded it
    shown: float | None  # the first frame handed to the driver that shows it


async def tui_child(db: Path) -> None:
    """``--child-tui``: the app headless on ``db``; stamps when its tail yields each
    marked AGENT_OUTPUT and the first frame that shows each marker; says READY, and at
    the end of stdin prints SEEN with the stamps."""
    from sisyphus_tui.tui.app import SisyphusApp

    arrived: dict[str, float] = {}
    shown: dict[str, float] = {}
    frames = [0]
    async with await open_store(db, create=False) as store:
        tail = store.tail

        async def stamped_tail(from_offset: int = 0, **kwargs: Any) -> AsyncIterator[Event]:
            async for event in tail(from_offset, **kwargs):
                if event.type == "AGENT_OUTPUT":
                    found = MARKER.search(str(event.payload.get("text", ""))[:20])
                    if found is not None and found.group(0) not in arrived:
                        arrived[found.group(0)] = time.time()
                yield event

        store.tail = stamped_tail  # type: ignore[method-assign]
        app = SisyphusApp(store)
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            from textual._compositor import CompositorUpdate

            if isinstance(renderable, CompositorUpdate):
                now = time.time()
                frames[0] += 1
                text = "".join(segment.text for segment in emitted_segments(renderable))
                for found in MARKER.finditer(text):
                    shown.setdefault(found.group(0), now)

        app._display = display  # type: ignore[method-assign]
        async with app.run_test(size=(WIDTH, HEIGHT)):
            await asyncio.sleep(0.5)
            emit("READY")
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            await asyncio.sleep(0.3)
    emit("SEEN " + json.dumps({"arrived": arrived, "shown": shown, "frames": frames[0]}))


async def agent_round(tmp: Path, store: EventStore, message: int, lines_file: Path,
                      first: int, n: int, seed: int, sequence: int,
                      samples: dict[str, list[float]]) -> int:
    """``n`` marked lines from the script through the real runner and parser, each event
    appended as ``run_solo`` does; returns the next sequence."""
    stamps = tmp / f"stamps-{first}.json"
    backend = ScriptBackend(tmp / "agent.py", [str(n), str(first), str(seed), str(stamps),
                                               str(GAP_S[0]), str(GAP_S[1]),
                                               str(lines_file)])

    async def said(event: AgentEvent) -> None:
        nonlocal sequence
        handed = time.time()
        await store.append("AGENT_OUTPUT", output_payload(message, sequence, event),
                           actor=AGENT, key=output_key(message, sequence))
        appended = time.time()
        sequence += 1
        found = MARKER.search(event.text[:20])
        if found is not None:
            samples[found.group(0)] = [handed, appended]

    result = await run_agent(backend, request_in(tmp), said)
    assert result.ok, (result.error, result.stderr_tail)
    for marker, written in json.loads(stamps.read_text()).items():
        samples[marker].insert(0, float(written))
    return sequence


async def direct_round(store: EventStore, message: int, body: list[str], first: int, n: int,
                       seed: int, sequence: int, samples: dict[str, list[float]]) -> int:
    """The peer: the same events (parsed beforehand, not timed) appended by this process,
    paced as the script paces its lines; stamped just before ``append()``."""
    rng = random.Random(seed)
    parser = ClaudeParser()
    for i in range(n):
        await asyncio.sleep(rng.uniform(*GAP_S))
        marker = f"MKd{first + i:05d}"
        line = body[i % len(body)].replace("MKMARKER", marker)
        event = parser.feed(line)[0]
        event = AgentEvent(event.kind, event.text, event.data, line)
        written = time.time()
        await store.append("AGENT_OUTPUT", output_payload(message, sequence, event),
                           actor=AGENT, key=output_key(message, sequence))
        samples[marker] = [written, written, time.time()]
        sequence += 1
    return sequence


@dataclass(slots=True)
class LatencyFigures:
    """Section 2: every marked line of both contenders."""

    agent: list[Sample]
    direct: list[Sample]
    frames: int
    seconds: float


def samples_of(raw: dict[str, list[float]], arrived: dict[str, float],
               shown: dict[str, float]) -> list[Sample]:
    return [Sample(marker, w, h, a, arrived.get(marker), shown.get(marker))
            for marker, (w, h, a) in sorted(raw.items())]


def start_tui(db: Path) -> subprocess.Popen[bytes]:
    """This module's ``--child-tui`` in a fresh interpreter."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.agents", "--child-tui",
                             str(db)], cwd=PROJECT_ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)


async def bench_latency(tmp: Path, per_contender: int, rounds: int) -> LatencyFigures:
    out(f"## 2. Latency, a line on the agent's stdout to its row on the TUI's screen: "
        f"{per_contender} marked lines per contender in {rounds} interleaved rounds, one "
        f"every {GAP_S[0] * 1e3:.0f}-{GAP_S[1] * 1e3:.0f} ms; the app headless (run_test "
        f"{WIDTH}x{HEIGHT}) in another process on the same database")
    db = tmp / "latency.db"
    lines_file = tmp / "latency-lines.json"
    per_round = per_contender // rounds
    lines = latency_lines(min(per_round, 60), seed=5)
    lines_file.write_text(json.dumps(lines))
    (tmp / "agent.py").write_text(AGENT_SCRIPT)
    raw: dict[str, list[float]] = {}
    started = time.perf_counter()
    async with await open_store(db) as store:
        message = await prepare(store)
        proc = start_tui(db)
        try:
            await asyncio.get_running_loop().run_in_executor(None, read_line, proc, "READY")
            sequence = 0
            for r in range(rounds):
                contenders = ("agent", "direct") if r % 2 == 0 else ("direct", "agent")
                for name in contenders:
                    first = r * per_round
                    if name == "agent":
                        sequence = await agent_round(tmp, store, message, lines_file, first,
                                                     per_round, 100 + r, sequence, raw)
                    else:
                        sequence = await direct_round(store, message, lines["body"], first,
                                                      per_round, 200 + r, sequence, raw)
                    await asyncio.sleep(0.3)
            assert proc.stdin is not None
            proc.stdin.close()
            seen = json.loads(await asyncio.get_running_loop().run_in_executor(
                None, read_line, proc, "SEEN"))
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    agent = samples_of({k: v for k, v in raw.items() if k.startswith("MKa")},
                       seen["arrived"], seen["shown"])
    direct = samples_of({k: v for k, v in raw.items() if k.startswith("MKd")},
                        seen["arrived"], seen["shown"])
    fig = LatencyFigures(agent, direct, int(seen["frames"]), time.perf_counter() - started)
    for label, group in (("agent (script -> runner -> parser -> append)", fig.agent),
                         ("direct (this process appends)", fig.direct)):
        missing = sum(s.shown is None for s in group)
        out(f"   {label}: {len(group)} lines, {missing} never seen on screen")
        for stage, values in stages(group):
            out(f"      {stage:<34} {ms4(values)}")
    out(f"   frames handed to the driver: {fig.frames} in {fig.seconds:.1f} s; the app's "
        f"refresh {REFRESH_HZ:g} Hz, the store's cross-process poll "
        f"{POLL_INTERVAL_S * 1e3:g} ms")
    out()
    return fig


def stages(group: list[Sample]) -> list[tuple[str, list[float]]]:
    """Each stage's durations in seconds (the samples where both ends were seen)."""
    return [
        ("written -> on screen", [s.shown - s.written for s in group if s.shown]),
        ("written -> on_event (adapter)", [s.handed - s.written for s in group]),
        ("on_event -> committed (append)", [s.appended - s.handed for s in group]),
        ("committed -> app's tail (poll)",
         [s.arrived - s.appended for s in group if s.arrived]),
        ("app's tail -> on screen (refresh)",
         [s.shown - s.arrived for s in group if s.shown and s.arrived]),
    ]


def ms4(values: Sequence[float]) -> str:
    """``p50 / p95 / p99 / max`` of seconds, in ms."""
    if not values:
        return "-"
    return " / ".join(f"{v * 1e3:.1f}" for v in (
        percentile(values, 50), percentile(values, 95), percentile(values, 99),
        max(values))) + " ms (p50 / p95 / p99 / max)"


# -- 3. summary ------------------------------------------------------------------------------


def summary(adapter: AdapterFigures | None, latency: LatencyFigures | None) -> str:
    lines = ["| Figure | Value | Peer | Ratio |", "|---|---:|---:|---:|"]
    if adapter is not None:
        n = adapter.session.lines
        raw = adapter.lines_per_s("raw").median
        for name in ("parse", "none", "awaited", "unawaited", "append_many"):
            lines_s = adapter.lines_per_s(name)
            events_s = adapter.events_per_s(name).median
            lines.append(f"| {CONTENDERS[name]} vs (a) {CONTENDERS['raw'][4:]}, {n:,} lines"
                         f" | {lines_s.median:,.0f} lines/s ({lines_s.spread()}); "
                         f"{events_s:,.0f} events/s | {raw:,.0f} lines/s | "
                         f"{adapter.ratio(name):.3f} |")
        lines.append(f"| (c) awaited appends vs (c0) the runner alone | "
                     f"{adapter.lines_per_s('awaited').median:,.0f} lines/s | "
                     f"{adapter.lines_per_s('none').median:,.0f} lines/s | "
                     f"{adapter.ratio('awaited', 'none'):.3f} |")
        lines.append(f"| (c3) append_many vs (c) awaited appends | "
                     f"{adapter.lines_per_s('append_many').median:,.0f} lines/s | "
                     f"{adapter.lines_per_s('awaited').median:,.0f} lines/s | "
                     f"{adapter.ratio('append_many', 'awaited'):.1f} |")
    if latency is not None:
        def p(values: list[float], q: float) -> float:
            return percentile(values, q) * 1e3 if values else float("nan")

        a, d = stages(latency.agent), stages(latency.direct)
        for index, label in ((0, "stdout line (agent) / append() (direct) -> row on screen"),
                             (3, "committed -> the app's tail yields it"),
                             (4, "the app's tail -> a frame shows it")):
            av, dv = a[index][1], d[index][1]
            lines.append(f"| Latency, {label}, p50 / p95 / p99 / max ({len(av)} lines) | "
                         f"{p(av, 50):.1f} / {p(av, 95):.1f} / {p(av, 99):.1f} / "
                         f"{max(av) * 1e3:.1f} ms | {p(dv, 50):.1f} / {p(dv, 95):.1f} / "
                         f"{p(dv, 99):.1f} / {max(dv) * 1e3:.1f} ms | "
                         f"{p(av, 50) / p(dv, 50):.2f} / {p(av, 95) / p(dv, 95):.2f} |")
        for index, label in ((1, "stdout line -> on_event (pipe, runner, parser)"),
                             (2, "on_event -> append() returned (the commit)")):
            av = a[index][1]
            lines.append(f"| Latency, agent, {label}, p50 / p95 / p99 / max | "
                         f"{p(av, 50):.2f} / {p(av, 95):.2f} / {p(av, 99):.2f} / "
                         f"{max(av) * 1e3:.2f} ms | | |")
        limit = (POLL_INTERVAL_S + 1 / REFRESH_HZ) * 1e3
        lines.append(f"| The limit: the store's {POLL_INTERVAL_S * 1e3:g} ms poll + the app's "
                     f"{REFRESH_HZ:g} Hz refresh, mean wait / worst | "
                     f"{limit / 2:.0f} / {limit:.0f} ms | | |")
    return "\n".join(lines)


# -- entry point ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.agents",
        description="Benchmark the coding-agent adapter: JSON lines parsed and appended "
        "against reading them raw, and a stdout line's latency to the TUI's screen.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller run: 3,000 lines, 2 reps, 60 latency lines each")
    parser.add_argument("--lines", type=int, default=None,
                        help="lines of the session file (default 20,000; 3,000 with --quick)")
    parser.add_argument("--reps", type=int, default=None,
                        help="passes per contender in section 1 (default 3; 2 with --quick)")
    parser.add_argument("--latency-lines", type=int, default=None,
                        help="marked lines per contender in section 2 (default 200; 60 "
                        "with --quick)")
    parser.add_argument("--only", choices=["adapter", "latency"], action="append",
                        help="run only these sections (repeatable)")
    parser.add_argument("--child-tui", metavar="DB", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    lines = args.lines or (3000 if args.quick else 20_000)
    reps = args.reps or (2 if args.quick else 3)
    latency_n = args.latency_lines or (60 if args.quick else 200)
    rounds = 2 if args.quick else 4
    sections = set(args.only or ["adapter", "latency"])
    out(f"# sisyphus-tui agent adapter benchmark{' (quick)' if args.quick else ''}")
    out(f"   {environment()}")
    out(f"   load average at start: {load_average()}")
    out()
    started = time.perf_counter()
    adapter = latency = None
    with tempfile.TemporaryDirectory(prefix="sisyphus-bench-") as name:
        tmp = Path(name)
        if "adapter" in sections:
            adapter = await bench_adapter(tmp, lines, reps)
        if "latency" in sections:
            latency = await bench_latency(tmp, latency_n, rounds)
    out(f"## Summary ({time.perf_counter() - started:.0f} s; rates: medians over the reps, "
        f"min-max in parentheses, ratios: medians of the per-rep ratios; latencies: "
        f"nearest-rank percentiles)")
    out(f"   load average at end: {load_average()}")
    out()
    out(summary(adapter, latency))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_tui:
        asyncio.run(tui_child(Path(args.child_tui)))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
