"""The TUI on a big log and under load, measured against an empty log and a bare fold in
the same run on this machine.

Run from the project root::

    uv run python -m benchmarks.tui            # full run: 1,000,000-event log
    uv run python -m benchmarks.tui --quick    # 100,000-event log, fewer presses

1. Opening a log. The real ``sisyphus tui --db DB`` runs in a fresh process inside a
   ``tmux`` pane of 120x40, on an empty log and on a log of 1,000,000 realistic swarm
   events (built as ``benchmarks/swarm.py`` builds its logs). Measured: the time from the
   app's exec until ``capture-pane`` shows the first full frame (the status line with
   the log's head, the footer, and the stream pane showing its last row: the newest
   event that is not bookkeeping, which the pane hides by default), and
   the process's peak RSS (``VmHWM``) then and once the ledger has caught up with the
   log. The catch-up (the app folds the whole log into its ledger in the background) is
   timed too, against the same fold without the app (``store.read`` pages and
   ``Ledger.apply``) in a fresh process.
2. Under load. Another process appends 2,000 realistic events per second (batches every
   10 ms, paced by the wall clock) while (a) the app runs headless in a fresh process
   (``App.run_test(size=(120, 40))``): a key press is timed until a frame showing its
   effect is handed to the terminal driver; and (b) the real app runs in a pseudo
   terminal of 120x40: the bytes it writes per second are counted (at 2,000 and at 200
   events/s, and with ``--low-bandwidth``), and a key press is timed until the bytes
   showing its effect arrive.
3. A markdown summary table, ready for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import pty
import random
import re
import shlex
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.segment import Segment
from textual import events
from textual._compositor import ChopsUpdate, CompositorUpdate, LayoutUpdate
from textual.app import App
from textual.screen import Screen

from benchmarks.stream import PROJECT_ROOT, environment, load_average, out, percentile, verdict
from benchmarks.swarm import TURN_WEIGHTS, SwarmLog, build_swarm_log, create_log
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.narrative import BOOKKEEPING
from sisyphus_tui.stream import EventStore, NewEvent, Page, open_store
from sisyphus_tui.stream.sqlite import MAX_BATCH_ROWS
from sisyphus_tui.tui.app import LOW_BANDWIDTH_HZ, REFRESH_HZ

WIDTH, HEIGHT = 120, 40
FIRST_FRAME_TARGET_S = 1.0
SAME_WITHIN = 1.2  # "within 20%": the larger of the pair over the smaller
KEY_P95_TARGET_MS = 100.0
LOAD_RATE = 2000.0  # events per second
LOW_RATE = 200.0  # the comparison rate for the bytes written
BATCH_INTERVAL_S = 0.01
POLL_S = 0.005  # between two tmux captures
FRAME_GRACE_S = 10.0  # after the status line, how long to wait for the rest of the frame
FOLD_PAGE = 1000  # the page the app's tail reads
APP = [sys.executable, "-m", "sisyphus_tui", "tui"]
APP_MODULES = ("sisyphus_tui.cli", "sisyphus_tui.tui.app")
READING_LOG = "reading log"
HEAD_IN_BYTES = re.compile(rb"head (\d+)")  # in the status line, once per drawing
# A stream row whose page is not read yet: its offset and an ellipsis, alone in a segment.
PLACEHOLDER_ROW = re.compile(rb"m *\d{1,8} \xe2\x80\xa6")


def mb(kib: int) -> float:
    """KiB (as /proc reports them) in MB (MiB)."""
    return kib / 1024


def emit(line: str) -> None:
    """A line to the parent on fd 1 (Textual may redirect ``sys.stdout`` while it runs)."""
    os.write(1, (line + "\n").encode())


def proc_status(pid: int) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (VmHWM, VmRSS, ...)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return fields


def child(*args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    """This module in a fresh interpreter (an internal ``--child-...`` mode)."""
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.tui", *args], cwd=PROJECT_ROOT, stdin=stdin,
        stdout=subprocess.PIPE)


def read_line(proc: subprocess.Popen[bytes], prefix: str) -> str:
    """The child's next line starting with ``prefix`` (the rest of it)."""
    assert proc.stdout is not None
    while True:
        raw = proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"child {proc.args!r} ended (exit {proc.wait()}) before {prefix}")
        line = raw.decode().rstrip("\n")
        if line.startswith(prefix):
            return line[len(prefix):].strip()


# -- the load: another process appending at a steady rate ---------------------------------


class ContinuedLog(SwarmLog):
    """The swarm benchmark's turns (status, file edits, test runs, mail, a CHECKPOINT per
    turn), numbered after ``base``: the log's head when the load starts."""

    def __init__(self, seed: int, base: int) -> None:
        super().__init__(seed)
        self.base = base
        self.count = 0
        self.names = list(TURN_WEIGHTS)
        self.weights = list(TURN_WEIGHTS.values())

    def add(self, type_: str, actor: str, payload_json: str, to: str | None = None) -> int:
        self.count += 1
        self.rows.append((type_, actor, to, payload_json, 0.0, None))
        return self.base + self.count

    def take(self, n: int) -> list[NewEvent]:
        """The next ``n`` events, validated and encoded as an agent's append does."""
        while len(self.rows) < n:
            self.turn(self.rng.choices(self.names, self.weights)[0])
        rows, self.rows = self.rows[:n], self.rows[n:]
        return [NewEvent.of(type_, json.loads(payload), actor=actor, to=to)
                for type_, actor, to, payload, _, _ in rows]


async def append_load(db: Path, rate: float, seed: int) -> None:
    """``--child-appender``: append ``rate`` events/s until stdin closes, in a batch every
    ``BATCH_INTERVAL_S`` sized by the wall clock (a late batch carries what is owed), then
    print what was achieved."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    async with await open_store(db, create=False) as store:
        log = ContinuedLog(seed, await store.head())
        await store.append_many(log.take(1))  # opens the writer
        emit("RUNNING")
        started = time.monotonic()
        sent = batches = 0
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate) - sent
            if due > 0:
                batch = log.take(min(due, MAX_BATCH_ROWS))
                await store.append_many(batch)
                sent += len(batch)
                batches += 1
            # The next tick of the wall clock's grid (a late batch skips the missed ones).
            elapsed = time.monotonic() - started
            delay = (int(elapsed / BATCH_INTERVAL_S) + 1) * BATCH_INTERVAL_S - elapsed
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
        elapsed = time.monotonic() - started
    emit("DONE " + json.dumps({"sent": sent, "seconds": elapsed, "batches": batches}))


@dataclass(frozen=True, slots=True)
class Load:
    """What an appender achieved."""

    sent: int
    seconds: float
    batches: int

    @property
    def rate(self) -> float:
        """Events per second achieved."""
        return self.sent / self.seconds if self.seconds else 0.0


class Appender:
    """An appender child: started, running, then stopped (stdin closed) with its figures."""

    def __init__(self, db: Path, rate: float, seed: int) -> None:
        self.proc = child("--child-appender", str(db), str(rate), str(seed),
                          stdin=subprocess.PIPE)
        read_line(self.proc, "RUNNING")

    def stop(self) -> Load:
        """Close the child's stdin; what it achieved."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        figures = json.loads(read_line(self.proc, "DONE"))
        self.proc.wait(timeout=30)
        return Load(int(figures["sent"]), float(figures["seconds"]), int(figures["batches"]))


# -- 1. opening a log, in tmux ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opening:
    """One launch of the app in tmux; times in seconds from its exec (None: not seen)."""

    events: int
    paint_s: float | None  # the footer drawn: the app's first paint
    status_s: float | None  # the status line with the head drawn
    frame_s: float | None  # the first full frame
    caught_up_s: float | None  # the status line no longer says "reading log"
    hwm_status_kib: int  # VmHWM when the status line was first seen
    hwm_frame_kib: int | None  # VmHWM when the first full frame was seen
    hwm_end_kib: int  # VmHWM at the end (after the catch-up, when waited for)
    screen: str  # the last capture

    @property
    def hwm_first_kib(self) -> int:
        """VmHWM at the first full frame, or at the status line if none came."""
        return self.hwm_status_kib if self.hwm_frame_kib is None else self.hwm_frame_kib


class Tmux:
    """A private tmux server (its own socket and an empty config), for one pane; the app
    in it inherits ``env`` (the server's environment)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.socket = f"sisyphus-bench-{os.getpid()}"
        self.env = env
        self.config = tmp / "tmux.conf"
        self.config.write_text("set -g status off\nset -g remain-on-exit on\n"
                               "set -g default-terminal tmux-256color\n")

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", str(self.config), *args],
                              capture_output=True, text=True, check=False, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def kill(self) -> None:
        """Stop this private server (and with it the app in its pane)."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       check=False)

    def close(self) -> None:
        """Stop the server and remove its socket file, which tmux leaves behind."""
        self.kill()
        base = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (base / self.socket).unlink(missing_ok=True)


def last_shown(db: Path) -> int:
    """The offset of the stream pane's last row when the app opens ``db``: the newest
    event that is not bookkeeping (hidden by default; 0 if none)."""
    conn = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(BOOKKEEPING))
        row = conn.execute(f'SELECT max("offset") FROM events WHERE type NOT IN ({marks})',
                           sorted(BOOKKEEPING)).fetchone()
    finally:
        conn.close()
    return int(row[0] or 0)


def screen_state(screen: str, head: int, last: int | None = None
                 ) -> tuple[bool, bool, bool, bool]:
    """(footer drawn, status line with the head, full frame, caught up) in a capture;
    ``last`` is the offset of the stream's last row (default: the head)."""
    lines = screen.splitlines() or [""]
    status = "sisyphus" in lines[0] and f"head {head}" in lines[0]
    # The palette's key, docked at the footer's right, is drawn whatever keys fit.
    footer = any("palette" in line for line in lines[-3:])
    last = head if last is None else last
    # A stream row starts with its offset and a space (then the time, if there is room,
    # or the actor); not the status line's "head N", nor the detail area's "@N".
    last_row = head == 0 or re.search(rf"(?<!head )(?<![\d@]){last} [\w-]", "\n".join(
        lines[1:])) is not None
    return (footer, status, status and footer and last_row,
            status and READING_LOG not in lines[0])


def open_in_tmux(tmux: Tmux, tmp: Path, db: Path, head: int, *, until_caught_up: bool,
                 timeout_s: float, last: int | None = None) -> Opening:
    """Launch ``sisyphus tui --db DB`` in a fresh 120x40 pane (``exec``, so the pane's pid
    is the app's) and poll ``capture-pane`` until the first full frame (and, if asked, the
    caught-up status line); the start is stamped by the shell just before the exec."""
    stamp = tmp / "started"
    stamp.unlink(missing_ok=True)
    command = (f"date +%s.%N > {shlex.quote(str(stamp))}; cd {shlex.quote(str(PROJECT_ROOT))}"
               f" && exec {shlex.join([*APP, '--db', str(db)])}")
    for attempt in range(10):  # the previous server may still be going away
        try:
            tmux("new-session", "-d", "-s", "bench", "-x", str(WIDTH), "-y", str(HEIGHT),
                 command)
            break
        except RuntimeError:
            if attempt == 9:
                raise
            time.sleep(0.2)
    try:
        pid = int(tmux("list-panes", "-t", "bench", "-F", "#{pane_pid}").split()[0])
        paint_s = status_s = frame_s = caught_s = None
        hwm_status = hwm_frame = polls = 0
        screen = ""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            screen = tmux("capture-pane", "-p", "-t", "bench")
            now = time.time()
            polls += 1
            if polls % 20 == 0 and tmux("list-panes", "-t", "bench", "-F",
                                        "#{pane_dead}").strip() == "1":
                raise RuntimeError(f"the app exited:\n{screen}")
            if not stamp.exists() or not stamp.read_text().strip():
                time.sleep(POLL_S)
                continue
            started = float(stamp.read_text())
            footer, status, full, caught = screen_state(screen, head, last)
            if footer and paint_s is None:
                paint_s = now - started
            if status and status_s is None:
                status_s = now - started
                hwm_status = proc_status(pid)["VmHWM"]
            if full and frame_s is None:
                frame_s = now - started
                hwm_frame = proc_status(pid)["VmHWM"]
            if caught and caught_s is None:
                caught_s = now - started
            # A frame that is not full FRAME_GRACE_S after the status line never will be.
            framed = frame_s is not None or (
                status_s is not None and now - started > status_s + FRAME_GRACE_S)
            if framed and (caught_s is not None or not until_caught_up):
                break
            time.sleep(POLL_S)
        time.sleep(0.5)  # what the next ticks allocate counts too
        hwm_end = proc_status(pid)["VmHWM"]
    finally:
        tmux.kill()
    return Opening(head, paint_s, status_s, frame_s, caught_s, hwm_status, hwm_frame or None,
                   hwm_end, screen)


async def bare_fold(db: Path) -> None:
    """``--child-fold``: the app's catch-up without the app: ``store.read`` pages of the
    tail's size from offset 1, each event folded into a ``Ledger``; prints the seconds."""
    async with await open_store(db, create=False) as store:
        head = await store.head()
        started = time.perf_counter()
        ledger = Ledger()
        next_offset = 1
        while next_offset <= head:
            page = await store.read(next_offset, FOLD_PAGE)
            for event in page.events:
                ledger.apply(event)
            next_offset = page.next_offset
        elapsed = time.perf_counter() - started
    emit(f"FOLD {elapsed} {proc_status(os.getpid())['VmHWM']}")


@dataclass(frozen=True, slots=True)
class OpeningFigures:
    """Section 1: every launch, in order, and the bare fold of the big log."""

    empty: list[Opening]
    big: list[Opening]
    imports_s: float  # median wall time of a process that only imports the app
    imports_uncached_s: float  # the same as installed (project modules compiled at launch)
    uncached_frame_s: float | None  # an empty log's first frame, as installed
    fold_s: float
    fold_hwm_kib: int


def median_of(values: Sequence[float | None]) -> float | None:
    """The median of the launches that saw the thing (None if none did)."""
    seen = sorted(v for v in values if v is not None)
    return seen[len(seen) // 2] if seen else None


def seconds(value: float | None) -> str:
    """A duration for the report, or 'never'."""
    return "never" if value is None else f"{value:.2f} s"


def time_imports(reps: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of a fresh interpreter importing the modules ``sisyphus tui`` loads
    before it draws anything: the part of the first frame that no log size changes."""
    samples: list[float] = []
    for _ in range(reps + 1):  # the first may write the bytecode cache: not counted
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {', '.join(APP_MODULES)}"],
                       cwd=PROJECT_ROOT, check=True, env=env)
        samples.append(time.perf_counter() - started)
    return sorted(samples[1:])[reps // 2]


def without_bytecode_cache(tmp: Path) -> dict[str, str]:
    """The environment as `uv run` gives it here: the dependencies' bytecode compiled when
    uv installed them (`compile-bytecode` in pyproject.toml), and PYTHONDONTWRITEBYTECODE=1
    (this sandbox's setting), so the project's own modules are compiled at each launch."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def bench_opening(tmp: Path, empty: Path, big: Path, events: int, reps: int,
                  timeout_s: float) -> OpeningFigures:
    out(f"## 1. Opening a log in tmux ({WIDTH}x{HEIGHT}): empty vs {events:,} events, "
        f"{reps} launch(es) each, interleaved; the first of each waits for the catch-up")
    uncached = without_bytecode_cache(tmp)
    imports_s = time_imports(max(reps, 3))  # its first run writes the bytecode cache
    imports_uncached_s = time_imports(max(reps, 3), uncached)
    out(f"   a process that only starts Python and imports the app (python -c \"import "
        f"{', '.join(APP_MODULES)}\"), median of {max(reps, 3)}: {imports_s:.2f} s with a "
        f"bytecode cache, {imports_uncached_s:.2f} s as installed (uv's compiled bytecode, "
        f"the project's modules compiled at each launch)")
    tmux = Tmux(tmp)
    tmux.kill()
    try:
        # Not counted: caches the bytecode of what the app imports later, warms the page cache.
        open_in_tmux(tmux, tmp, empty, 0, until_caught_up=False, timeout_s=timeout_s)
        no_cache = open_in_tmux(Tmux(tmp, uncached), tmp, empty, 0, until_caught_up=False,
                                timeout_s=timeout_s)
        out(f"           0 events, as installed (the project's modules compiled): first frame "
            f"{seconds(no_cache.frame_s)}")
        runs: dict[int, list[Opening]] = {0: [], events: []}
        big_last = last_shown(big)
        for rep in range(reps):
            for path, head in ((empty, 0), (big, events)) if rep % 2 == 0 else (
                    (big, events), (empty, 0)):
                opening = open_in_tmux(tmux, tmp, path, head, until_caught_up=rep == 0,
                                       timeout_s=timeout_s, last=big_last if head else None)
                runs[head].append(opening)
                out(f"   {head:>9,} events: footer {seconds(opening.paint_s)}, status line "
                    f"{seconds(opening.status_s)} (VmHWM "
                    f"{mb(opening.hwm_status_kib):.1f} MB), first full frame "
                    f"{seconds(opening.frame_s)} (VmHWM {mb(opening.hwm_first_kib):.1f} MB)"
                    + (f", caught up {seconds(opening.caught_up_s)} (VmHWM "
                       f"{mb(opening.hwm_end_kib):.1f} MB)" if rep == 0 else ""))
                if opening.frame_s is None:
                    top = re.search(r"│\s*(\d+) \d\d:\d\d:\d\d ", opening.screen)
                    out(f"     no full frame within {FRAME_GRACE_S:g} s of the status line: the "
                        f"stream pane's top row was offset {top.group(1) if top else '?'}, and "
                        f"{head:,} was not on screen")
    finally:
        tmux.close()
    proc = child("--child-fold", str(big))
    fold, hwm = read_line(proc, "FOLD").split()
    proc.wait()
    fold_s, fold_hwm = float(fold), int(hwm)
    out(f"   bare fold of the {events:,}-event log (store.read pages of {FOLD_PAGE} + "
        f"Ledger.apply, fresh process): {fold_s:.2f} s ({events / fold_s:,.0f} ev/s), "
        f"VmHWM {mb(fold_hwm):.1f} MB")
    out()
    return OpeningFigures(runs[0], runs[events], imports_s, imports_uncached_s,
                          no_cache.frame_s, fold_s, fold_hwm)


# -- 2a. key press to frame, headless in a fresh process ----------------------------------------


def emitted_segments(update: CompositorUpdate) -> Iterator[Segment]:
    """The segments a terminal driver would write for ``update`` (for a partial update,
    only the spans that changed, as ``ChopsUpdate.render_segments`` selects them)."""
    if isinstance(update, LayoutUpdate):
        for line in update.strips:
            for strip in line:
                yield from strip
    elif isinstance(update, ChopsUpdate):
        for y, x1, x2 in update.spans:
            for end, (x, chop) in zip(update.chop_ends[y], update.chops[y].items(),
                                      strict=False):
                if chop is not None and x <= x2 and end > x1:
                    yield from chop


def shows_selected(update: CompositorUpdate, offset: int) -> bool:
    """Whether ``update`` draws the stream's selected (reverse video) row at ``offset``."""
    label = str(offset)
    return any(segment.style is not None and segment.style.reverse
               and segment.text.strip() == label for segment in emitted_segments(update))


Check = Callable[[CompositorUpdate, str], bool]


class FrameProbe:
    """Sees every frame the app hands to its driver (``App._display``), renders it to the
    bytes a terminal would get (the headless driver skips that), and stamps the first
    frame that passes the check of a pending key press."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.frames = 0
        self.bytes = 0
        self.check: Check | None = None
        self.seen = asyncio.Event()
        self.seen_at = 0.0
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if isinstance(renderable, CompositorUpdate):
                text = renderable.render_segments(app.console)
                self.frames += 1
                self.bytes += len(text.encode())
                if self.check is not None and self.check(renderable, text):
                    self.seen_at = time.perf_counter()
                    self.check = None
                    self.seen.set()

        # The screen looks it up on the app for every frame.
        app._display = display  # type: ignore[method-assign]

    async def press(self, key: str, check: Check, timeout_s: float = 5.0) -> float:
        """Send ``key`` as the terminal driver does; seconds until a frame passes ``check``."""
        self.seen.clear()
        self.check = check
        driver = self.app._driver
        assert driver is not None
        started = time.perf_counter()
        driver.send_message(events.Key(key, key if len(key) == 1 else None))
        await asyncio.wait_for(self.seen.wait(), timeout_s)
        return self.seen_at - started


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late a 5 ms sleep wakes up: how long the event loop is kept busy."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        samples.append(time.perf_counter() - started - 0.005)


class AppMeter:
    """Where the app spends its time under load, read from outside: its coalesced refresh
    per tick, the screen's layout and render passes on the event loop (outermost calls
    of ``Screen._refresh_layout`` / ``_compositor_refresh``), and every ``store.read`` it
    makes (rows, and the time awaited: the reader thread's queue included)."""

    def __init__(self, app: App[Any], store: EventStore) -> None:
        self.ticks: list[float] = []
        self.passes: list[float] = []
        self.layouts = 0
        self.reads: dict[str, list[tuple[int, float]]] = {}
        self.cancelled: dict[str, int] = {}
        self.started = time.perf_counter()
        refresh = getattr(app, "_refresh_panes", None)
        if callable(refresh):  # the app's coalesced refresh, if it still has that name

            def timed_refresh() -> None:
                began = time.perf_counter()
                refresh()
                self.ticks.append(time.perf_counter() - began)

            # Before on_mount hands it to its interval timer.
            app._refresh_panes = timed_refresh  # type: ignore[attr-defined]
        read = store.read

        async def timed_read(from_offset: int = 0, limit: int = 1000, **filters: Any) -> Page:
            label = f"read(limit={limit}" + "".join(
                f", {k}=..." for k, v in sorted(filters.items()) if v) + ")"
            began = time.perf_counter()
            try:
                page = await read(from_offset, limit, **filters)
            except asyncio.CancelledError:
                # Its caller gave up; aiosqlite's thread runs the query all the same.
                self.cancelled[label] = self.cancelled.get(label, 0) + 1
                raise
            self.reads.setdefault(label, []).append((len(page.events),
                                                     time.perf_counter() - began))
            return page

        store.read = timed_read  # type: ignore[method-assign]

    def watch_screen(self, screen: Screen[Any]) -> None:
        """Time the screen's layout and render passes (the outermost call of the two)."""
        depth = [0]

        def timed(method: Callable[..., None], layout: bool) -> Callable[..., None]:
            def run(*args: Any, **kwargs: Any) -> None:
                depth[0] += 1
                began = time.perf_counter()
                try:
                    method(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:
                        self.passes.append(time.perf_counter() - began)
                    self.layouts += layout
            return run

        # The screen looks both up on itself for every frame.
        screen._refresh_layout = timed(screen._refresh_layout, True)  # type: ignore[method-assign]
        screen._compositor_refresh = timed(  # type: ignore[method-assign]
            screen._compositor_refresh, False)

    def reset(self) -> None:
        """Start counting afresh (the load has started)."""
        self.ticks.clear()
        self.passes.clear()
        self.layouts = 0
        self.reads.clear()
        self.cancelled.clear()
        self.started = time.perf_counter()

    def figures(self) -> dict[str, Any]:
        """Everything since the last reset, as JSON-ready values."""
        return {"seconds": time.perf_counter() - self.started, "ticks": self.ticks,
                "passes": self.passes, "layouts": self.layouts, "reads": self.reads,
                "cancelled": self.cancelled}


async def key_latency(db: Path, presses: int, seed: int, catch_up_timeout_s: float) -> None:
    """``--child-keys``: the app headless (``run_test``, 120x40) on ``db``. Once its ledger
    has caught up it says READY and waits for GO (the load is running); then it times
    ``presses`` presses of ``f`` (the status line flips between 'following' and
    'scrolled') and of down/up (the stream's selected row moves; following is off and the
    selection a few rows above the tail, so only the keys move it), at random gaps of
    0.1-0.3 s, so the presses fall anywhere in the app's 10 Hz refresh cycle."""
    from sisyphus_tui.tui.app import SisyphusApp
    from sisyphus_tui.tui.widgets.event_stream import EventStream

    rng = random.Random(seed)
    async with await open_store(db, create=False) as store:
        head = await store.head()
        app = SisyphusApp(store)
        probe = FrameProbe(app)
        meter = AppMeter(app, store)
        async with app.run_test(size=(WIDTH, HEIGHT)):
            meter.watch_screen(app.screen)
            started = time.perf_counter()
            while app.ledger.offset < head:
                if time.perf_counter() - started > catch_up_timeout_s:
                    raise TimeoutError(f"the ledger is at {app.ledger.offset} of {head}")
                await asyncio.sleep(0.05)
            emit("READY " + json.dumps({"seconds": time.perf_counter() - started,
                                        "meter": meter.figures()}))
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            await asyncio.sleep(1.0)
            meter.reset()
            frames0, bytes0, clock0 = probe.frames, probe.bytes, time.perf_counter()
            lags: list[float] = []
            stop = asyncio.Event()
            lagger = asyncio.create_task(loop_lag(lags, stop))
            stream = app.query_one(EventStream)

            def words(word: str) -> Check:
                return lambda _update, text: word in text

            follow: list[float] = []
            for i in range(presses):
                follow.append(await probe.press("f", words("scrolled" if i % 2 == 0
                                                            else "following")))
                await asyncio.sleep(rng.uniform(0.1, 0.3))
            if presses % 2 == 0:  # following again: stop, for the moves
                await probe.press("f", words("scrolled"))
            for _ in range(3):  # a few rows above the tail, so the tail never reaches it
                await probe.press("up", lambda _u, _t: True)
            await asyncio.sleep(0.3)
            moves: list[float] = []
            for i in range(presses):
                before = stream.cursor_row

                def moved(update: CompositorUpdate, _text: str, before: int = before) -> bool:
                    row = stream.cursor_row
                    return row != before and shows_selected(update, stream.row_offset(row))

                moves.append(await probe.press("down" if i % 2 == 0 else "up", moved))
                await asyncio.sleep(rng.uniform(0.1, 0.3))
            stop.set()
            await lagger
            elapsed = time.perf_counter() - clock0
            emit("KEYS " + json.dumps({
                "follow": follow, "move": moves, "lag": lags,
                "fps": (probe.frames - frames0) / elapsed,
                "frame_bytes_per_s": (probe.bytes - bytes0) / elapsed,
                "meter": meter.figures()}))


@dataclass(frozen=True, slots=True)
class KeyFigures:
    """Section 2a, seconds."""

    catch_up_s: float
    follow: list[float]
    move: list[float]
    lag: list[float]
    fps: float
    frame_bytes_per_s: float
    meter: dict[str, Any]  # AppMeter.figures()
    load: Load

    @property
    def ticks(self) -> list[float]:
        return list(self.meter["ticks"])

    @property
    def passes(self) -> list[float]:
        return list(self.meter["passes"])

    def per_second(self, count: float) -> float:
        """``count`` over the measured span."""
        return count / float(self.meter["seconds"])


def ms_spread(samples: Sequence[float]) -> str:
    """``p50 / p95 / max`` of seconds, in ms."""
    if not samples:
        return "-"
    return (f"{percentile(samples, 50) * 1000:.1f} / {percentile(samples, 95) * 1000:.1f} / "
            f"{max(samples) * 1000:.1f} ms")


def bench_keys(db: Path, presses: int, timeout_s: float) -> KeyFigures:
    out(f"## 2a. Key press to frame under {LOAD_RATE:,.0f} appended events/s: the app "
        f"headless (run_test {WIDTH}x{HEIGHT}) in a fresh process, {presses} presses per key")
    keys = child("--child-keys", str(db), str(presses), "11", str(timeout_s),
                 stdin=subprocess.PIPE)
    ready = json.loads(read_line(keys, "READY"))
    catch_up_s = float(ready["seconds"])
    out(f"   the app's ledger caught up with the log in {catch_up_s:.1f} s (from the first "
        f"frame of run_test), meanwhile:")
    describe_meter(ready["meter"])
    out("   then the load starts:")
    load = Appender(db, LOAD_RATE, seed=12)
    assert keys.stdin is not None
    keys.stdin.write(b"GO\n")
    keys.stdin.flush()
    figures = json.loads(read_line(keys, "KEYS"))
    keys.wait(timeout=60)
    achieved = load.stop()
    fig = KeyFigures(catch_up_s, figures["follow"], figures["move"], figures["lag"],
                     figures["fps"], figures["frame_bytes_per_s"], figures["meter"], achieved)
    out(f"   load: {achieved.rate:,.0f} events/s achieved ({achieved.sent:,} in "
        f"{achieved.seconds:.1f} s, {achieved.batches:,} batches)")
    out(f"   f -> status line flipped, p50 / p95 / max: {ms_spread(fig.follow)}")
    out(f"   down/up -> selected row moved, p50 / p95 / max: {ms_spread(fig.move)}")
    out(f"   event loop late (5 ms sleeps), p50 / p95 / max: {ms_spread(fig.lag)}")
    out(f"   frames: {fig.fps:.1f}/s, {fig.frame_bytes_per_s:,.0f} bytes/s rendered")
    describe_meter(fig.meter)
    out()
    return fig


def describe_meter(meter: dict[str, Any]) -> None:
    """Print an ``AppMeter.figures()``: the screen's passes, the ticks, the reads."""
    span = float(meter["seconds"])
    passes = [float(p) for p in meter["passes"]]
    out(f"     screen passes {len(passes) / span:.1f}/s ({meter['layouts'] / span:.1f}/s with "
        f"a layout), {sum(passes) / span:.0%} of the loop's time, each p50 / p95 / max "
        f"{ms_spread(passes)}")
    if meter["ticks"]:
        out(f"     the app's coalesced refresh (_refresh_panes), per tick p50 / p95 / max: "
            f"{ms_spread([float(t) for t in meter['ticks']])}")
    cancelled: dict[str, int] = meter["cancelled"]
    for label in sorted(set(meter["reads"]) | set(cancelled)):
        reads = meter["reads"].get(label, [])
        rows = sorted(int(r) for r, _ in reads) or [0]
        waits = [float(t) for _, t in reads]
        gave_up = cancelled.get(label, 0)
        out(f"     store.{label}: {len(reads) / span:.1f}/s returned"
            + (f" (and {gave_up / span:.1f}/s cancelled by the caller, run all the same by "
               f"the reader thread)" if gave_up else "")
            + f", rows p50 {rows[len(rows) // 2]:,} max {rows[-1]:,}, awaited p50 / p95 / "
            f"max {ms_spread(waits)}, {sum(waits):.1f} s in all")


# -- 2b. bytes to a real terminal ---------------------------------------------------------------


# What moves the cursor or draws nothing: an absolute move (row;column H), any other CSI
# sequence (colours, modes), an OSC sequence, a line feed.
TERMINAL_CONTROL = re.compile(rb"\x1b\[(\d+);(\d+)H|\x1b\[[0-9;?<>=]*[ -/]*[@-~]"
                              rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\n")


class StatusRow:
    """The terminal's first row (the status line) as the app's bytes leave it: the text
    written at each cursor position of row 1, fed incrementally. The app redraws only
    what changed (a span of the row, not always the whole line), so the row is kept, not
    read from the last drawing."""

    def __init__(self, width: int) -> None:
        self.cells = [" "] * width
        self.row: int | None = None
        self.column = 0
        self.parsed = 0  # bytes of the output consumed

    def feed(self, data: bytes) -> None:
        """Apply ``data`` (the output from byte ``self.parsed`` on) up to its last escape:
        a sequence may be cut at the end, and the text before an escape is whole UTF-8."""
        end = data.rfind(b"\x1b")
        if end <= 0:
            return
        position = 0
        for control in TERMINAL_CONTROL.finditer(data, 0, end):
            self._write(data[position:control.start()])
            if control[1] is not None:
                self.row, self.column = int(control[1]), int(control[2]) - 1
            elif control[0] == b"\n":
                self.row = None if self.row is None else self.row + 1
                self.column = 0
            position = control.end()
        self._write(data[position:end])
        self.parsed += end

    def _write(self, text: bytes) -> None:
        for char in text.decode("utf-8", "replace"):
            if self.row == 1 and 0 <= self.column < len(self.cells):
                self.cells[self.column] = char
            self.column += 1

    @property
    def text(self) -> str:
        return "".join(self.cells)


class PtyApp:
    """The real app in a pseudo terminal of 120x40 (TERM=xterm-256color, COLORTERM=truecolor,
    as a modern terminal says), its output read as it comes by a thread and kept."""

    def __init__(self, db: Path, low_bandwidth: bool) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor")
        for name in ("COLUMNS", "LINES", "NO_COLOR", "TEXTUAL_FPS", "TEXTUAL_ANIMATIONS"):
            env.pop(name, None)
        argv = [*APP, "--db", str(db)] + (["--low-bandwidth"] if low_bandwidth else [])
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     cwd=PROJECT_ROOT, env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.data = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    @property
    def received(self) -> int:
        """Bytes the app has written so far."""
        with self.lock:
            return len(self.data)

    def since(self, position: int) -> bytes:
        """What the app wrote from ``position`` on."""
        with self.lock:
            return bytes(self.data[position:])

    def wait_caught_up(self, head: int, timeout_s: float) -> float:
        """Seconds until the status line shows the head and no 'reading log' (its last
        drawing, a second later still)."""
        started = time.monotonic()
        stable_since: float | None = None
        status = StatusRow(WIDTH)
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited: {self.since(0)[-2000:]!r}")
            status.feed(self.since(status.parsed))
            # "(reading log: N)" is drawn before "head N", anywhere in the line.
            heads = HEAD_IN_BYTES.findall(status.text.encode())
            caught = bool(heads) and int(heads[-1]) >= head and (
                READING_LOG not in status.text)
            now = time.monotonic()
            if caught:
                stable_since = stable_since or now
                if now - stable_since >= 1.0:
                    return stable_since - started
            else:
                stable_since = None
            time.sleep(0.05)
        raise TimeoutError(f"the app did not catch up with {head:,} events in {timeout_s} s")

    def count(self, seconds_: float) -> tuple[float, bytes]:
        """Bytes per second written over ``seconds_``, and those bytes."""
        first, started = self.received, time.monotonic()
        time.sleep(seconds_)
        written = self.since(first)
        return len(written) / (time.monotonic() - started), written

    def press(self, key: bytes, word: bytes, timeout_s: float = 5.0) -> float:
        """Write ``key`` to the terminal; seconds until bytes containing ``word`` arrive."""
        position = self.received
        started = time.monotonic()
        os.write(self.master, key)
        while time.monotonic() - started < timeout_s:
            if word in self.since(position):
                return time.monotonic() - started
            time.sleep(0.0005)
        raise TimeoutError(f"{word!r} never appeared after the key {key!r}")

    def close(self) -> None:
        """Quit the app with its own key (terminated if it does not go)."""
        os.write(self.master, b"q")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        os.close(self.master)
        self.reader.join(timeout=5)


@dataclass(slots=True)
class TerminalFigures:
    """Section 2b for one mode (normal or --low-bandwidth)."""

    low_bandwidth: bool
    catch_up_s: float = 0.0
    idle: float = 0.0  # bytes/s, nothing appended
    at_low: float = 0.0  # bytes/s at LOW_RATE
    at_load: float = 0.0  # bytes/s at LOAD_RATE
    status_hz: float = 0.0  # status line drawings per second at LOAD_RATE
    placeholders: float = 0.0  # stream rows drawn as "offset …" per second at LOAD_RATE
    loads: list[Load] = field(default_factory=list)
    follow: list[float] = field(default_factory=list)


def bench_terminal(db: Path, window_s: float, presses: int, seed: int, low_bandwidth: bool,
                   timeout_s: float) -> TerminalFigures:
    """Launch in a pty, wait for the catch-up, then count bytes idle, at 200 and at 2,000
    events/s, and time ``f`` presses under the 2,000 events/s load."""
    fig = TerminalFigures(low_bandwidth)

    async def head_of() -> int:
        async with await open_store(db, create=False) as store:
            return await store.head()

    app = PtyApp(db, low_bandwidth)
    try:
        fig.catch_up_s = app.wait_caught_up(asyncio.run(head_of()), timeout_s)
        fig.idle, _ = app.count(min(window_s, 5.0))
        for rate in (LOW_RATE, LOAD_RATE):
            load = Appender(db, rate, seed=seed + int(rate))
            time.sleep(1.0)  # the app sees the load
            rate_bytes, written = app.count(window_s)
            if rate == LOAD_RATE:
                fig.at_load = rate_bytes
                fig.status_hz = len(HEAD_IN_BYTES.findall(written)) / window_s
                fig.placeholders = len(PLACEHOLDER_ROW.findall(written)) / window_s
                rng = random.Random(seed)
                for i in range(presses):
                    fig.follow.append(app.press(b"f", b"scrolled" if i % 2 == 0
                                                else b"following"))
                    time.sleep(rng.uniform(0.1, 0.3))
                if presses % 2:
                    app.press(b"f", b"following")
            else:
                fig.at_low = rate_bytes
            fig.loads.append(load.stop())
    finally:
        app.close()
    return fig


def bench_terminals(db: Path, window_s: float, presses: int,
                    timeout_s: float) -> list[TerminalFigures]:
    out(f"## 2b. Bytes written to a real terminal (pty {WIDTH}x{HEIGHT}, xterm-256color, "
        f"truecolor), {window_s:g} s windows: idle, {LOW_RATE:,.0f} and {LOAD_RATE:,.0f} "
        f"appended events/s; f -> status line flipped, {presses} presses under load")
    results: list[TerminalFigures] = []
    for low_bandwidth in (False, True):
        fig = bench_terminal(db, window_s, presses, 21, low_bandwidth, timeout_s)
        results.append(fig)
        ms = 1000
        rates = ", ".join(f"{load.rate:,.0f}" for load in fig.loads)
        out(f"   {'--low-bandwidth' if low_bandwidth else 'default        '}: caught up in "
            f"{fig.catch_up_s:.1f} s; idle {fig.idle:,.0f} B/s, at {LOW_RATE:,.0f} ev/s "
            f"{fig.at_low:,.0f} B/s, at {LOAD_RATE:,.0f} ev/s {fig.at_load:,.0f} B/s "
            f"(loads achieved: {rates} ev/s); at {LOAD_RATE:,.0f} ev/s the status line drawn "
            f"{fig.status_hz:.1f}/s, {fig.placeholders:,.0f} stream rows/s drawn as "
            f"placeholders ('offset …'); f p50 {percentile(fig.follow, 50) * ms:.1f} ms, "
            f"p95 {percentile(fig.follow, 95) * ms:.1f} ms")
    out()
    return results


# -- 3. summary ---------------------------------------------------------------------------------


def ratio_of(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing."""
    return None if a is None or b is None or b == 0 else a / b


def within(ratio: float | None) -> bool:
    """Whether two figures are within 20% of each other (either way)."""
    return ratio is not None and 1 / SAME_WITHIN <= ratio <= SAME_WITHIN


def cell(ratio: float | None) -> str:
    """A ratio for the table."""
    return "-" if ratio is None else f"{ratio:.2f}"


def summary(opening: OpeningFigures | None, keys: KeyFigures | None,
            terminals: list[TerminalFigures]) -> str:
    """The markdown table: each figure, its peer, the ratio, the target and the verdict."""
    lines = ["| Figure | Value | Peer | Ratio | Target | Result |",
             "|---|---:|---:|---:|---|---|"]
    ms = 1000
    if opening is not None:
        n = opening.big[0].events
        first_e = median_of([o.frame_s for o in opening.empty])
        first_b = median_of([o.frame_s for o in opening.big])
        status_e = median_of([o.status_s for o in opening.empty])
        status_b = median_of([o.status_s for o in opening.big])
        reps = len(opening.big)
        seen_e = sum(o.frame_s is not None for o in opening.empty)
        seen_b = sum(o.frame_s is not None for o in opening.big)
        ok_e = first_e is not None and first_e < FIRST_FRAME_TARGET_S and seen_e == reps
        lines.append(f"| First full frame, empty log (tmux, from exec; median of the launches "
                     f"that drew one: {seen_e} of {reps}) | {seconds(first_e)} | | | "
                     f"< {FIRST_FRAME_TARGET_S:g} s | {verdict(ok_e)} |")
        r = ratio_of(first_b, first_e)
        ok_b = (first_b is not None and first_b < FIRST_FRAME_TARGET_S and within(r)
                and seen_b == reps)
        lines.append(f"| First full frame (status line, footer, last offset's row), {n:,}-event"
                     f" log vs empty ({seen_b} of {reps} launches drew one) | "
                     f"{seconds(first_b)} | {seconds(first_e)} | {cell(r)} | "
                     f"< {FIRST_FRAME_TARGET_S:g} s, within 20% | {verdict(ok_b)} |")
        r = ratio_of(status_b, status_e)
        lines.append(f"| Status line with the head drawn, {n:,} vs empty | {seconds(status_b)}"
                     f" | {seconds(status_e)} | {cell(r)} | context | |")
        paint_e = median_of([o.paint_s for o in opening.empty])
        paint_b = median_of([o.paint_s for o in opening.big])
        r = ratio_of(paint_b, paint_e)
        lines.append(f"| First paint (the footer drawn), {n:,} vs empty | {seconds(paint_b)} | "
                     f"{seconds(paint_e)} | {cell(r)} | context | |")
        r = ratio_of(opening.imports_s, first_e)
        lines.append(f"| Of the empty log's first frame: a process that only starts Python and "
                     f"imports the app | {opening.imports_s:.2f} s | {seconds(first_e)} | "
                     f"{cell(r)} | context | |")
        r = ratio_of(opening.uncached_frame_s, first_e)
        lines.append(f"| First full frame, empty log, as installed: uv's compiled bytecode, the "
                     f"project's own modules compiled at launch (imports alone "
                     f"{opening.imports_uncached_s:.2f} s) vs with | "
                     f"{seconds(opening.uncached_frame_s)} | {seconds(first_e)} | {cell(r)} | "
                     f"context | |")
        hwm_e = median_of([mb(o.hwm_first_kib) for o in opening.empty])
        hwm_b = median_of([mb(o.hwm_first_kib) for o in opening.big])
        r = ratio_of(hwm_b, hwm_e)
        where = "" if all(o.frame_s is not None for o in opening.big + opening.empty) else (
            " (at the status line where no full frame came)")
        lines.append(f"| Peak RSS (VmHWM) at the first frame{where}, {n:,} vs empty | "
                     f"{hwm_b or 0:.1f} MB | {hwm_e or 0:.1f} MB | {cell(r)} | within 20% | "
                     f"{verdict(within(r))} |")
        end_e, end_b = mb(opening.empty[0].hwm_end_kib), mb(opening.big[0].hwm_end_kib)
        r = ratio_of(end_b, end_e)
        lines.append(f"| Peak RSS (VmHWM) once the ledger caught up, {n:,} vs empty | "
                     f"{end_b:.1f} MB | {end_e:.1f} MB | {cell(r)} | within 20% | "
                     f"{verdict(within(r))} |")
        caught = opening.big[0].caught_up_s
        r = ratio_of(caught, opening.fold_s)
        lines.append(f"| Catch-up: the app's ledger folds the {n:,}-event log (launch to "
                     f"status line without 'reading log') vs the bare fold (store.read + "
                     f"Ledger.apply) | {seconds(caught)} | {opening.fold_s:.2f} s | "
                     f"{cell(r)} | context | |")
    if keys is not None:
        lines.append(f"| Load from another process: appended events/s (batches every "
                     f"{BATCH_INTERVAL_S * ms:g} ms) | {keys.load.rate:,.0f} | | | "
                     f"{LOAD_RATE:,.0f} | |")
        for label, samples in (
                ("f -> status line flipped ('following'/'scrolled')", keys.follow),
                ("down/up -> selected row moved in the stream", keys.move)):
            p95 = percentile(samples, 95) * ms
            lines.append(f"| Key to frame under load, headless (run_test), {label}, p50 / p95 "
                         f"({len(samples)} presses) | {percentile(samples, 50) * ms:.1f} / "
                         f"{p95:.1f} ms | | | p95 < {KEY_P95_TARGET_MS:g} ms | "
                         f"{verdict(p95 < KEY_P95_TARGET_MS)} |")
        lines.append(f"| Event loop late (5 ms sleeps) under load, p50 / p95 / max | "
                     f"{ms_spread(keys.lag)} | | | context | |")
        lines.append(f"| Screen layout + render passes on the loop under load, each p50 / p95 / "
                     f"max ({keys.per_second(len(keys.passes)):.1f}/s, "
                     f"{keys.per_second(keys.meter['layouts']):.1f}/s with a layout) | "
                     f"{ms_spread(keys.passes)} | | "
                     f"{keys.per_second(sum(keys.passes)):.0%} of the loop | context | |")
        if keys.ticks:
            lines.append(f"| The app's coalesced refresh under load, per 0.1 s tick, p50 / p95 "
                         f"/ max | {ms_spread(keys.ticks)} | | | context | |")
    by_mode = {t.low_bandwidth: t for t in terminals}
    normal, low = by_mode.get(False), by_mode.get(True)
    if normal is not None:
        p95 = percentile(normal.follow, 95) * ms
        lines.append(f"| Key to bytes in a real pty under load, f -> status line flipped, "
                     f"p50 / p95 ({len(normal.follow)} presses) | "
                     f"{percentile(normal.follow, 50) * ms:.1f} / {p95:.1f} ms | | | "
                     f"p95 < {KEY_P95_TARGET_MS:g} ms | {verdict(p95 < KEY_P95_TARGET_MS)} |")
        peer = f"{low.at_load:,.0f} B/s" if low is not None else ""
        r = ratio_of(normal.at_load, low.at_load if low is not None else None)
        lines.append(f"| Bytes to the terminal at {LOAD_RATE:,.0f} ev/s: default vs "
                     f"--low-bandwidth | {normal.at_load:,.0f} B/s | {peer} | {cell(r)} | "
                     f"report | |")
        r = ratio_of(normal.at_load, normal.at_low)
        lines.append(f"| Bytes to the terminal, default: {LOAD_RATE:,.0f} vs {LOW_RATE:,.0f} "
                     f"ev/s (coalesced: not proportional to the rate) | {normal.at_load:,.0f}"
                     f" B/s | {normal.at_low:,.0f} B/s | {cell(r)} | < 2 (rate x10) | "
                     f"{verdict(r is not None and r < 2)} |")
        for fig, hz in ((normal, REFRESH_HZ), (low, LOW_BANDWIDTH_HZ)):
            if fig is None:
                continue
            mode = "--low-bandwidth" if fig.low_bandwidth else "default"
            lines.append(f"| Status line drawings per second in the terminal at "
                         f"{LOAD_RATE:,.0f} ev/s, {mode}, vs the app's refresh rate | "
                         f"{fig.status_hz:.1f}/s | {hz:g}/s | {fig.status_hz / hz:.2f} | "
                         f"context | |")
        lines.append(f"| Stream rows drawn as placeholders ('offset …', page not read yet) at "
                     f"{LOAD_RATE:,.0f} ev/s, default | {normal.placeholders:,.0f}/s | | | "
                     f"context | |")
        lines.append(f"| Bytes to the terminal with nothing appended, default / "
                     f"--low-bandwidth | {normal.idle:,.0f} B/s | "
                     f"{low.idle if low is not None else 0:,.0f} B/s | | context | |")
    if low is not None:
        r = ratio_of(low.at_load, low.at_low)
        lines.append(f"| Bytes to the terminal, --low-bandwidth: {LOAD_RATE:,.0f} vs "
                     f"{LOW_RATE:,.0f} ev/s | {low.at_load:,.0f} B/s | {low.at_low:,.0f} B/s | "
                     f"{cell(r)} | < 2 (rate x10) | {verdict(r is not None and r < 2)} |")
        lines.append(f"| Key to bytes in a real pty under load, --low-bandwidth, f, p50 / p95 "
                     f"| {percentile(low.follow, 50) * ms:.1f} / "
                     f"{percentile(low.follow, 95) * ms:.1f} ms | | | context (2 Hz) | |")
    return "\n".join(lines)


# -- entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tui",
        description="Benchmark the TUI: opening a big log against an empty one (tmux), key "
        "presses and bytes to the terminal under 2,000 appended events/s.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller run: 100,000 events, 1 launch each, 20 presses, 4 s "
                        "windows")
    parser.add_argument("--events", type=int, default=None,
                        help="the big log's size (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--reps", type=int, default=None,
                        help="launches per log in section 1 (default 3; 1 with --quick)")
    parser.add_argument("--presses", type=int, default=None,
                        help="timed presses per key (default 50; 20 with --quick)")
    parser.add_argument("--window", type=float, default=None,
                        help="seconds of each bytes count (default 10; 4 with --quick)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for a catch-up or a frame (900)")
    parser.add_argument("--only", choices=["open", "keys", "terminal"], action="append",
                        help="run only these sections (repeatable)")
    parser.add_argument("--child-appender", nargs=3, metavar=("DB", "RATE", "SEED"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--child-keys", nargs=4, metavar=("DB", "N", "SEED", "TIMEOUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--child-fold", metavar="DB", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Stopped with SIGTERM, still remove the temporary directory and the tmux server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.child_appender:
        db, rate, seed = args.child_appender
        asyncio.run(append_load(Path(db), float(rate), int(seed)))
        return 0
    if args.child_keys:
        db, n, seed, timeout = args.child_keys
        asyncio.run(key_latency(Path(db), int(n), int(seed), float(timeout)))
        return 0
    if args.child_fold:
        asyncio.run(bare_fold(Path(args.child_fold)))
        return 0

    events_n = args.events or (100_000 if args.quick else 1_000_000)
    reps = args.reps or (1 if args.quick else 3)
    presses = args.presses or (20 if args.quick else 50)
    window = args.window or (4.0 if args.quick else 10.0)
    sections = set(args.only or ["open", "keys", "terminal"])
    out(f"# sisyphus-tui TUI benchmark{' (quick)' if args.quick else ''}")
    out(f"   {environment()}")
    out(f"   load average at start: {load_average()}")
    out()
    started = time.perf_counter()
    opening = keys = None
    terminals: list[TerminalFigures] = []
    with tempfile.TemporaryDirectory(prefix="sisyphus-bench-") as name:
        tmp = Path(name)
        # Every process started from here on (the app, the children) caches its bytecode
        # in the temporary directory, as an installed Python does next to its modules;
        # left to this environment (PYTHONDONTWRITEBYTECODE=1, no .pyc in the venv) each
        # would compile every module it imports. Section 1 measures both.
        given = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        out(f"   bytecode: cached under the temporary directory for every process started "
            f"(PYTHONPYCACHEPREFIX; this environment's PYTHONDONTWRITEBYTECODE={given})")
        empty, big = tmp / "empty.db", tmp / "big.db"
        built = time.perf_counter()
        create_log(empty)
        build_swarm_log(big, events_n, seed=7)
        out(f"   logs built in {time.perf_counter() - built:.1f} s: empty, and {events_n:,} "
            f"swarm events ({big.stat().st_size / 1e6:,.0f} MB)")
        out()
        if "open" in sections:
            opening = bench_opening(tmp, empty, big, events_n, reps, args.timeout)
        # Sections 2a and 2b append to the big log: they run after section 1.
        if "keys" in sections:
            keys = bench_keys(big, presses, args.timeout)
        if "terminal" in sections:
            terminals = bench_terminals(big, window, presses, args.timeout)
    out(f"## Summary ({time.perf_counter() - started:.0f} s; first frames: medians over the "
        f"launches; key presses: nearest-rank percentiles)")
    out(f"   load average at end: {load_average()}")
    out()
    out(summary(opening, keys, terminals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
