"""What a wipe costs an actor, and what the ledger costs, measured against the naive
alternatives in the same run on this machine.

Run from the project root::

    uv run python -m benchmarks.swarm            # full run (about two minutes on 2 cores)
    uv run python -m benchmarks.swarm --quick    # 10k and 100k logs only

1. Resume after a wipe. For each log size (10k, 100k, 1M events) a log is built with
   ``open_store`` (the store's schema) and filled with raw ``sqlite3``: turns of a
   realistic swarm (status, file edits, test runs, mail between agents, a CHECKPOINT
   per turn), ~200-byte payloads. The agent ``executor`` has CHECKPOINTs all through the
   log, its last one near the end, a row in ``cursors``, and 5 MESSAGEs pending after
   its cursor. Timed: ``await Executor(swarm, "executor", brain).boot()`` (a fresh actor
   after each ``wipe()``), exactly what a resume costs; checked: it found the cursor,
   the checkpoint's state and the 5 pending messages. Peer: the naive resume, re-reading
   the whole log from offset 0 with ``store.read`` pages and folding the actor's events.
2. The ledger. The real demo swarm runs once in-process (it really runs pytest), and
   its events, repeated with fresh offsets into a long stream, give (a) the cost of
   ``Ledger.apply`` per event and of ``render()``, and (b) a full rebuild from offset 0
   (``store.read`` pages + fold + one render) against the same read without the fold.
   The rebuild's render must equal the incrementally kept ledger's, byte for byte.
3. A markdown summary table, ready for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stream import (
    INSERT_ONE,
    PAYLOAD_BYTES,
    Runs,
    dumps,
    environment,
    expect_rows,
    load_average,
    out,
    percentile,
    remove_db,
    verdict,
)
from sisyphus_tui.actors.executor import Executor
from sisyphus_tui.brains import make_brain
from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.ledger import LEDGER_FILE, Ledger
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import Event, EventStore, open_store

AGENT = "executor"
PENDING = 5
TAIL_ROWS = 120  # rows after the executor's last checkpoint (the 5 pending among them)
PAGE = 1000
BOOT_TARGET_MS = 50.0
RENDER_INTERVAL_S = 0.2  # the live ledger re-renders at most this often (runtime.py)
INSERT_CURSOR = "INSERT INTO cursors (agent, position, ts) VALUES (?, ?, ?)"
# Who takes a turn, and how often: the kernel drives, the executor works most.
TURN_WEIGHTS = {"kernel": 3, AGENT: 2, "planner": 1, "validator": 1, "researcher": 1,
                "executor-2": 1, "executor-3": 1}
FILES = ("inventory/items.py", "inventory/repository.py", "inventory/report.py",
         "tests/test_repository.py", "tests/test_report.py")
FILLER_WORDS = (
    "Replaced the raw SQL in get_user_by_email with the repository helper, added an "
    "index on users.email and a regression test for the empty result. "
) * 2
SHAS = tuple(hashlib.sha256(str(i).encode()).hexdigest() for i in range(64))


# -- building a swarm's log --------------------------------------------------------------


def padded(payload: dict[str, Any], field: str) -> str:
    """The payload's JSON with ``field`` (text) padded so it is ~PAYLOAD_BYTES long."""
    payload[field] = ""
    room = PAYLOAD_BYTES - len(dumps(payload))
    payload[field] = FILLER_WORDS[: max(room, 8)]
    return dumps(payload)


@dataclass(frozen=True, slots=True)
class Expected:
    """What a resume of the executor must find in a built log."""

    cursor: int
    state: dict[str, Any]
    pending: int


class SwarmLog:
    """Rows of a swarm's log in turns: an agent handles the mail sent to it (status, maybe
    a file edit or a test run, a message to another agent) and checkpoints its cursor."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: list[tuple[Any, ...]] = []
        self.last_mail: dict[str, int] = dict.fromkeys(TURN_WEIGHTS, 0)
        self.cursors: dict[str, int] = dict.fromkeys(TURN_WEIGHTS, 0)
        self.states: dict[str, dict[str, Any]] = {name: {} for name in TURN_WEIGHTS}
        self.ts0 = time.time() - 86_400
        self._names = list(TURN_WEIGHTS)
        self._weights = list(TURN_WEIGHTS.values())

    def add(self, type_: str, actor: str, payload_json: str, to: str | None = None) -> int:
        """Append one row; its offset is its rowid (the log starts empty)."""
        self.rows.append((type_, actor, to, payload_json, self.ts0 + len(self.rows) * 0.05,
                          None))
        return len(self.rows)

    def mail(self, sender: str, to: str, kind: str, step: int) -> None:
        """A MESSAGE from ``sender`` to ``to``."""
        offset = self.add("MESSAGE", sender, padded(
            {"kind": kind, "text": "", "data": {"step": step}, "reply_to": len(self.rows)},
            "text"), to=to)
        self.last_mail[to] = offset

    def turn(self, agent: str, *, mail_executor: bool = True) -> None:
        """One handled message's worth of events, ending with the agent's CHECKPOINT."""
        rng = self.rng
        step = len(self.rows) // 50
        self.add("STATUS_UPDATE", agent, padded(
            {"agent": agent, "state": "working", "detail": "", "phase": "execute"}, "detail"))
        if agent.startswith(AGENT) and rng.random() < 0.6:
            path = rng.choice(FILES)
            after = rng.choice(SHAS)
            self.add("FILE_EDIT", agent, dumps(
                {"path": path, "before_sha256": rng.choice(SHAS), "after_sha256": after,
                 "step": step, "already_applied": False}))
            files: dict[str, str] = self.states[agent].setdefault("files", {})
            files[path] = after
        if rng.random() < 0.3:
            self.add("TEST_PASS", agent, padded(
                {"command": ["python", "-m", "pytest", "-q"], "step": step, "exit_code": 0,
                 "duration_s": round(rng.uniform(0.3, 2.0), 4), "output_tail": ""},
                "output_tail"))
        others = [n for n in self._names if n != agent and (mail_executor or n != AGENT)]
        self.mail(agent, rng.choice(others), rng.choice(("note", "result", "execute_step")),
                  step)
        # Handling moved the agent's cursor to the newest message it had been sent.
        self.cursors[agent] = self.last_mail[agent]
        state = self.states[agent]
        state["step"] = state.get("step", 0) + 1
        self.add("CHECKPOINT", agent, dumps(
            {"agent": agent, "cursor": self.cursors[agent], "step": state["step"],
             "state": state}))

    def build(self, events: int) -> Expected:
        """``events`` rows: turns, the executor's last turn, then a tail of other agents'
        turns among which exactly ``PENDING`` messages go to the executor."""
        body = events - TAIL_ROWS
        if body < 100:
            raise ValueError(f"a log needs at least {TAIL_ROWS + 100} events, not {events}")
        while len(self.rows) < body - 8:
            self.turn(self.rng.choices(self._names, self._weights)[0])
        self.turn(AGENT)
        expected_state = json.loads(dumps(self.states[AGENT]))
        expected_cursor = self.cursors[AGENT]
        others = [n for n in self._names if n != AGENT]
        sent = 0
        while len(self.rows) < events:
            room = events - len(self.rows)
            if sent < PENDING and (room <= 2 * (PENDING - sent) or self.rng.random() < 0.15):
                self.mail("kernel", AGENT, "execute_step", len(self.rows) // 50)
                sent += 1
            elif room >= 6:
                self.turn(self.rng.choice(others), mail_executor=False)
            else:
                self.add("STATUS_UPDATE", "kernel", padded(
                    {"agent": "kernel", "state": "waiting", "detail": "", "phase": "execute"},
                    "detail"))
        return Expected(expected_cursor, expected_state, sent)


def create_log(path: Path) -> None:
    """An empty log made by the store itself (so the schema is exactly the store's)."""

    async def create() -> None:
        store = await open_store(path)
        await store.close()

    asyncio.run(create())


def insert_rows(path: Path, rows: Iterator[list[tuple[Any, ...]]],
                cursors: Sequence[tuple[str, int, float]] = ()) -> None:
    """Bulk-insert chunks of event rows (and cursor rows), then checkpoint the WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # building only; the reads are what count
        for chunk in rows:
            conn.execute("BEGIN")
            conn.executemany(INSERT_ONE, chunk)
            conn.execute("COMMIT")
        conn.executemany(INSERT_CURSOR, cursors)
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"could not checkpoint {path.name}")
    finally:
        conn.close()


def chunks(rows: Sequence[tuple[Any, ...]], size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` in lists of ``size``: one transaction each."""
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def build_swarm_log(path: Path, events: int, seed: int) -> Expected:
    """A swarm's log of ``events`` events with the executor's checkpoints, cursor row and
    pending mail; returns what its resume must find."""
    log = SwarmLog(seed)
    expected = log.build(events)
    create_log(path)
    ts = time.time()
    insert_rows(path, chunks(log.rows),
                [(name, position, ts) for name, position in log.cursors.items()])
    expect_rows(path, events)
    return expected


# -- 1. resume after a wipe -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    """One log size: boot samples (seconds), the naive replay, and the checks."""

    events: int
    boots: list[float]
    first_boot: float
    naive: Runs  # seconds
    boot_ok: bool
    naive_ok: bool

    @property
    def p50_ms(self) -> float:
        return percentile(self.boots, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.boots, 99) * 1000


def found(cursor: int, state: dict[str, Any], pending: int, expected: Expected) -> bool:
    """Whether a resume found exactly what the log holds for the executor."""
    return (cursor, state, pending) == (expected.cursor, expected.state, expected.pending)


async def boot_once(swarm: Swarm, expected: Expected) -> tuple[float, bool]:
    """One resume: a fresh Executor's ``boot()``, timed, then wiped; and whether it found
    the cursor, the checkpoint's state and the pending messages."""
    actor = Executor(swarm, AGENT, make_brain("scripted"))
    started = time.perf_counter()
    info = await actor.boot()
    elapsed = time.perf_counter() - started
    actor.wipe()
    # reread = the checkpoint + the pending messages of the first page.
    return elapsed, found(info.cursor, info.state, info.reread - 1, expected)


async def naive_resume(store: EventStore, name: str) -> tuple[int, dict[str, Any], int]:
    """The resume without cursor row or index: read the whole log from offset 0 in pages
    and fold the actor's events (its checkpoints; the mail sent to it after them)."""
    cursor = 0
    state: dict[str, Any] = {}
    pending: list[Event] = []
    next_offset = 0
    while True:
        page = await store.read(next_offset, PAGE)
        if not page.events:
            break
        for event in page.events:
            if event.actor == name and event.type == "CHECKPOINT":
                cursor = event.payload["cursor"]
                state = dict(event.payload.get("state", {}))
                pending = [m for m in pending if m.offset > cursor]
            elif event.to == name:
                pending.append(event)
        next_offset = page.next_offset
    return cursor, state, len(pending)


async def measure_resume(logs: Sequence[tuple[int, Path, Expected]], workspace: Path,
                         boots: int) -> list[Resume]:
    """Open every log; time the first boot on each fresh store, then ``boots`` rounds of
    one boot per log (interleaved in a rotating order, so every size sees the same
    moments of the machine's load); then the naive replay of each (3 times; once at 1M
    events and more)."""
    async with contextlib.AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(await open_store(path, create=False))
                  for _, path, _ in logs]
        swarms = [Swarm(store, workspace, write_ledger=False) for store in stores]
        firsts: list[float] = []
        ok = [True] * len(logs)
        for i, (swarm, (_, _, expected)) in enumerate(zip(swarms, logs, strict=True)):
            elapsed, good = await boot_once(swarm, expected)
            firsts.append(elapsed)
            ok[i] = ok[i] and good
        samples: list[list[float]] = [[] for _ in logs]
        order = list(range(len(logs)))
        for round_ in range(boots):
            # Rotate the order each round, so no size always boots first.
            shift = round_ % len(order)
            for i in order[shift:] + order[:shift]:
                elapsed, good = await boot_once(swarms[i], logs[i][2])
                samples[i].append(elapsed)
                ok[i] = ok[i] and good
        results: list[Resume] = []
        for i, (store, (events, _, expected)) in enumerate(zip(stores, logs, strict=True)):
            naive: list[float] = []
            naive_ok = True
            for _ in range(1 if events >= 1_000_000 else 3):
                started = time.perf_counter()
                cursor, state, pending = await naive_resume(store, AGENT)
                naive.append(time.perf_counter() - started)
                naive_ok = naive_ok and found(cursor, state, pending, expected)
            results.append(Resume(events, samples[i], firsts[i], Runs(tuple(naive)), ok[i],
                                  naive_ok))
    return results


def bench_resume(tmp: Path, sizes: Sequence[int], boots: int) -> list[Resume]:
    out(f"## 1. Resume after a wipe: Executor.boot() ({boots} boots per size, interleaved "
        f"across sizes; nearest-rank p99, so the slowest of fewer than 100) against the "
        f"naive replay from offset 0")
    workspace = tmp / "workspace"
    workspace.mkdir()
    logs: list[tuple[int, Path, Expected]] = []
    for events in sizes:
        path = tmp / f"resume-{events}.db"
        started = time.perf_counter()
        expected = build_swarm_log(path, events, seed=events)
        out(f"   built {events:>9,} events ({path.stat().st_size / 1e6:,.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s: the executor's cursor "
            f"{expected.cursor:,}, last checkpoint's state (step {expected.state.get('step')}, "
            f"{len(expected.state.get('files', {}))} file hashes), {expected.pending} pending")
        logs.append((events, path, expected))
    results = asyncio.run(measure_resume(logs, workspace, boots))
    for _, path, _ in logs:
        remove_db(path)
    for result in results:
        checks = "found all: OK" if result.boot_ok and result.naive_ok else (
            f"WRONG (boot {'ok' if result.boot_ok else 'wrong'}, "
            f"naive {'ok' if result.naive_ok else 'wrong'})")
        naive_s = result.naive.median
        out(f"   {result.events:>9,} events: boot p50 {result.p50_ms:.2f} ms, p99 "
            f"{result.p99_ms:.2f} ms (first boot after open {result.first_boot * 1000:.2f} ms), "
            f"{checks}")
        out(f"             naive replay {naive_s:.3f} s ({result.events / naive_s:,.0f} ev/s, "
            f"{result.naive.spread('.3f')}), {naive_s * 1000 / result.p50_ms:,.0f}x the "
            f"boot p50")
    if len(results) > 1:
        small, large = results[0], results[-1]
        out(f"   boot at {large.events:,} / boot at {small.events:,}: p50 "
            f"{large.p50_ms / small.p50_ms:.2f}, p99 {large.p99_ms / small.p99_ms:.2f} "
            f"(does not grow with the log: ~1)")
    largest = results[-1]
    out(f"   p99 at {largest.events:,} events: {largest.p99_ms:.2f} ms (target < "
        f"{BOOT_TARGET_MS:g} ms): {verdict(largest.p99_ms < BOOT_TARGET_MS)}")
    out()
    return results


# -- 2. the ledger ---------------------------------------------------------------------------


async def run_demo(db: Path, workspace: Path) -> Ledger:
    """The real demo swarm, in this event loop, at speed 0 (as tests/swarm/inprocess.py)."""
    async with await open_store(db) as store:
        await prepare_demo(store, workspace, None)
        swarm = Swarm(store, workspace, speed=0.0)
        return await swarm.run()


async def read_all(store: EventStore) -> list[Event]:
    """Every event of the log, in offset order."""
    events: list[Event] = []
    next_offset = 0
    while True:
        page = await store.read(next_offset, PAGE)
        if not page.events:
            return events
        events.extend(page.events)
        next_offset = page.next_offset


def repeated(demo: Sequence[Event], count: int) -> list[Event]:
    """``count`` events: the demo's, over and over, offsets 1..count in order, later
    times, keys made unique per repetition (the log's keys are unique)."""
    span = demo[-1].ts - demo[0].ts + 1.0
    stream: list[Event] = []
    for i in range(count):
        rep, event = divmod(i, len(demo))
        e = demo[event]
        stream.append(e._replace(offset=i + 1, ts=e.ts + rep * span,
                                 key=None if e.key is None else f"{e.key}#{rep}"))
    return stream


def fold(events: Sequence[Event]) -> Ledger:
    """A fresh ledger with ``events`` applied."""
    ledger = Ledger()
    for event in events:
        ledger.apply(event)
    return ledger


def time_renders(ledger: Ledger, seconds: float = 1.0) -> float:
    """Median seconds per ``render()``, over about ``seconds`` of calls."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        started = time.perf_counter()
        ledger.render()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def rebuild(path: Path) -> tuple[float, str, int]:
    """``Ledger()`` + every event from offset 0 in pages + one render: seconds, render,
    events."""
    async with await open_store(path, create=False) as store:
        await store.head()  # the reader connection is open and used
        started = time.perf_counter()
        ledger = Ledger()
        apply = ledger.apply
        count = 0
        next_offset = 0
        while True:
            page = await store.read(next_offset, PAGE)
            if not page.events:
                break
            for event in page.events:
                apply(event)
            count += len(page.events)
            next_offset = page.next_offset
        text = ledger.render()
        return time.perf_counter() - started, text, count


async def read_only(path: Path) -> tuple[float, int]:
    """The same pages read, no fold: seconds, events."""
    async with await open_store(path, create=False) as store:
        await store.head()
        started = time.perf_counter()
        count = 0
        next_offset = 0
        while True:
            page = await store.read(next_offset, PAGE)
            if not page.events:
                break
            count += len(page.events)
            next_offset = page.next_offset
        return time.perf_counter() - started, count


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """Section 2's figures."""

    demo_events: int
    demo_seconds: float
    live_file_equal: bool
    stream_events: int
    apply_us: Runs
    render_ms: float
    render_bytes: int
    render_long_ms: float
    rebuild: Runs  # events/s
    read: Runs  # events/s
    identical: bool
    rebuilt_bytes: int


def bench_ledger(tmp: Path, events: int, reps: int) -> LedgerFigures:
    out(f"## 2. Ledger: the real demo's events, folded incrementally and rebuilt from offset 0 "
        f"({events:,} events, {reps} run(s) each)")
    demo_dir = tmp / "demo"
    started = time.perf_counter()
    asyncio.run(run_demo(demo_dir / "log.db", demo_dir / "workspace"))
    demo_s = time.perf_counter() - started

    async def read_demo() -> list[Event]:
        async with await open_store(demo_dir / "log.db", create=False) as store:
            return await read_all(store)

    demo = asyncio.run(read_demo())
    at_end = fold(demo)
    live_text = (demo_dir / "workspace" / LEDGER_FILE).read_text(encoding="utf-8")
    live_equal = live_text == at_end.render()
    out(f"   demo ran in {demo_s:.1f} s: {len(demo)} events, phase {at_end.phase}; its live "
        f"{LEDGER_FILE} {'equals' if live_equal else 'DIFFERS FROM'} a fold of its log")

    # (a) the incremental cost: apply over a long stream of the demo's events, in memory.
    stream = repeated(demo, events)
    per_event: list[float] = []
    incremental = Ledger()
    # Passes are short (~0.1 s): take the median of several, others share these cores.
    for _ in range(max(reps, 5)):
        ledger = Ledger()
        apply = ledger.apply
        began = time.perf_counter()
        for event in stream:
            apply(event)
        per_event.append((time.perf_counter() - began) / len(stream) * 1e6)
        incremental = ledger
    apply_us = Runs(tuple(per_event))
    render_s = time_renders(at_end)
    render_long_s = time_renders(incremental)
    out(f"   (a) Ledger.apply: {apply_us.median:.2f} us per event (spread "
        f"{apply_us.spread('.2f')}), over {len(stream):,} events")
    out(f"       render() at the end of the demo: {render_s * 1000:.3f} ms per call "
        f"({len(at_end.render()):,} bytes), {render_s / RENDER_INTERVAL_S:.2%} of one core at "
        f"one render per {RENDER_INTERVAL_S:g} s; after the {len(stream):,}-event stream "
        f"({len(incremental.render()):,} bytes): {render_long_s * 1000:.2f} ms")

    # (b) the full rebuild from a log of the same events.
    path = tmp / "ledger.db"
    create_log(path)
    insert_rows(path, chunks([(e.type, e.actor, e.to, dumps(e.payload), e.ts, e.key)
                              for e in stream]))
    expect_rows(path, len(stream))
    rebuild_rates: list[float] = []
    read_rates: list[float] = []
    identical = True
    expected_text = incremental.render()
    rebuilt_bytes = 0
    asyncio.run(read_only(path))  # warm the page cache for both
    for _ in range(reps):
        seconds, text, count = asyncio.run(rebuild(path))
        if count != len(stream):
            raise RuntimeError(f"rebuild read {count} events, expected {len(stream)}")
        identical = identical and text == expected_text
        rebuilt_bytes = len(text.encode())
        rebuild_rates.append(count / seconds)
        seconds, count = asyncio.run(read_only(path))
        read_rates.append(count / seconds)
    remove_db(path)
    fig = LedgerFigures(
        demo_events=len(demo), demo_seconds=demo_s, live_file_equal=live_equal,
        stream_events=len(stream), apply_us=apply_us, render_ms=render_s * 1000,
        render_bytes=len(at_end.render()), render_long_ms=render_long_s * 1000,
        rebuild=Runs(tuple(rebuild_rates)), read=Runs(tuple(read_rates)),
        identical=identical, rebuilt_bytes=rebuilt_bytes)
    out(f"   (b) rebuild (read + fold + render) {fig.rebuild.median:,.0f} ev/s (spread "
        f"{fig.rebuild.spread()}), read only {fig.read.median:,.0f} ev/s (spread "
        f"{fig.read.spread()}): rebuild/read = {fig.rebuild.median / fig.read.median:.2f}; "
        f"{events:,} events rebuilt in {events / fig.rebuild.median:.2f} s")
    out(f"       rebuild's render == the incremental ledger's render: "
        f"{'byte-identical' if identical else 'DIFFERENT'} ({rebuilt_bytes:,} bytes)")
    out()
    return fig


# -- 3. summary --------------------------------------------------------------------------------


def summary(resume: list[Resume], ledger: LedgerFigures | None) -> str:
    """The markdown table: each figure, its peer, the ratio, the target and the verdict."""
    lines = ["| Figure | Value | Peer | Ratio | Target | Result |",
             "|---|---:|---:|---:|---|---|"]
    for r in resume:
        naive_s = r.naive.median
        lines.append(
            f"| Resume: Executor.boot() after a wipe, {r.events:,}-event log, p50 / p99 "
            f"({len(r.boots)} boots) vs naive replay from offset 0 + fold | "
            f"{r.p50_ms:.2f} / {r.p99_ms:.2f} ms | {naive_s * 1000:,.0f} ms | "
            f"{naive_s * 1000 / r.p50_ms:,.0f}x faster | context | |")
    if resume:
        largest = resume[-1]
        lines.append(
            f"| Resume: boot p99 at {largest.events:,} events | {largest.p99_ms:.2f} ms | | | "
            f"< {BOOT_TARGET_MS:g} ms | {verdict(largest.p99_ms < BOOT_TARGET_MS)} |")
        if len(resume) > 1:
            small = resume[0]
            ratio = largest.p50_ms / small.p50_ms
            lines.append(
                f"| Resume: boot p50 at {largest.events:,} vs {small.events:,} events "
                f"(p99 ratio {largest.p99_ms / small.p99_ms:.2f}) | {largest.p50_ms:.2f} ms | "
                f"{small.p50_ms:.2f} ms | {ratio:.2f} | ~1 (< 2) | {verdict(ratio < 2)} |")
        ok = all(r.boot_ok and r.naive_ok for r in resume)
        lines.append(
            f"| Resume: boot found the cursor, last checkpoint's state and {PENDING} pending "
            f"messages (naive replay agrees), every size | {'yes' if ok else 'NO'} | | | "
            f"exact | {verdict(ok)} |")
    if ledger is not None:
        lines.append(
            f"| Ledger.apply per event ({ledger.stream_events:,} events: the demo's "
            f"{ledger.demo_events}, repeated) | {ledger.apply_us.median:.2f} us "
            f"({ledger.apply_us.spread('.2f')}) | | | context | |")
        lines.append(
            f"| Ledger.render() at the end of the demo ({ledger.render_bytes:,} bytes) vs the "
            f"{RENDER_INTERVAL_S:g} s re-render interval | {ledger.render_ms:.3f} ms | "
            f"{RENDER_INTERVAL_S * 1000:g} ms | {ledger.render_ms / (RENDER_INTERVAL_S * 1000):.2%}"
            f" of a core | context | |")
        ratio = ledger.rebuild.median / ledger.read.median
        lines.append(
            f"| Ledger rebuild from offset 0, {ledger.stream_events:,} events (store.read + "
            f"apply + render) vs store.read alone | {ledger.rebuild.median:,.0f} ev/s | "
            f"{ledger.read.median:,.0f} ev/s | {ratio:.2f} | context | |")
        lines.append(
            f"| Ledger: rebuild's render == incremental ledger's render | "
            f"{'identical' if ledger.identical else 'DIFFERENT'} ({ledger.rebuilt_bytes:,} "
            f"bytes) | | | byte-identical | {verdict(ledger.identical)} |")
        lines.append(
            f"| Ledger: the demo's live {LEDGER_FILE} == a fold of its log | "
            f"{'identical' if ledger.live_file_equal else 'DIFFERENT'} | | | byte-identical | "
            f"{verdict(ledger.live_file_equal)} |")
    return "\n".join(lines)


# -- entry point ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.swarm",
        description="Benchmark an actor's resume after a wipe against the naive replay, "
        "and the ledger's fold, render and rebuild, in one run.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller run: 10k and 100k logs, 20k ledger events")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="log sizes for the resume (default 10000 100000 1000000; "
                        "10000 100000 with --quick)")
    parser.add_argument("--boots", type=int, default=30, help="timed boots per size (30)")
    parser.add_argument("--ledger-events", type=int, default=None,
                        help="events in the ledger's stream and log (default 100,000; "
                        "20,000 with --quick)")
    parser.add_argument("--reps", type=int, default=3,
                        help="runs of the ledger rebuild and its peer, interleaved (3)")
    parser.add_argument("--only", choices=["resume", "ledger"], action="append",
                        help="run only these sections (repeatable)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted(args.sizes or ([10_000, 100_000] if args.quick
                                  else [10_000, 100_000, 1_000_000]))
    ledger_events = args.ledger_events or (20_000 if args.quick else 100_000)
    sections = set(args.only or ["resume", "ledger"])
    out(f"# sisyphus-tui swarm benchmark{' (quick)' if args.quick else ''}")
    out(f"   {environment()}")
    out(f"   load average at start: {load_average()}")
    out()
    started = time.perf_counter()
    resume: list[Resume] = []
    ledger = None
    with tempfile.TemporaryDirectory(prefix="sisyphus-bench-") as name:
        tmp = Path(name)
        if "resume" in sections:
            resume = bench_resume(tmp, sizes, args.boots)
        if "ledger" in sections:
            ledger = bench_ledger(tmp, ledger_events, args.reps)
    out(f"## Summary ({time.perf_counter() - started:.0f} s; boots: percentiles over "
        f"{args.boots} boots, nearest rank; rates: medians, min-max in parentheses)")
    out(f"   load average at end: {load_average()}")
    out()
    out(summary(resume, ledger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
