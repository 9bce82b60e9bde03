"""The event store against its peers, all measured in one run on this machine.

Run from the project root::

    uv run python -m benchmarks.stream            # full run (a few minutes on 2 cores)
    uv run python -m benchmarks.stream --quick    # smaller run (about half a minute)

Three figures, each printed with the ratio against a peer measured in the same run,
with the same ~200-byte JSON payloads, on fresh database files in a temporary
directory that is removed at the end:

1. Durable write throughput (WAL, ``synchronous=FULL``), 50 concurrent producers x 200
   events. Ours (``store.append`` from 50 coroutines, group commit) against
   (a) the limit: raw ``sqlite3`` group commit in a dedicated writer thread, fed by 50
       coroutines through a queue and futures (the same producer side as ours, so the
       ratio measures only what aiosqlite and the store add);
   (b) the naive pattern: one aiosqlite connection, one INSERT + COMMIT per event,
       50 coroutines behind an ``asyncio.Lock``;
   (c) the peer library: eventsourcing's ``SQLiteApplicationRecorder`` written by 50
       threads, one ``insert_events`` call (one transaction) per event.
2. Replay: read a log of 1,000,000 events from the start, in pages, payloads decoded;
   ours (``store.read``) against raw ``sqlite3`` keyset paging + ``json.loads``.
3. Tail latency, in-process and across processes (see ``tail_in_process``).

Everything is run ``--reps`` times (5 by default, interleaved, each on a fresh file)
and the median is reported with the min-max spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import queue
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import aiosqlite
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
)

from sisyphus_tui.events import encode_json
from sisyphus_tui.stream import Event, EventStore, open_store
from sisyphus_tui.stream.sqlite import MAX_BATCH_ROWS, SCHEMA

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EVENT_TYPE = "x.bench"
PAYLOAD_BYTES = 200
SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
INSERT_ONE = 'INSERT INTO events (type, actor, "to", payload, ts, key) VALUES (?,?,?,?,?,?)'
SELECT_PAGE = (
    'SELECT "offset", type, actor, "to", payload, ts, key FROM events '
    'WHERE "offset" >= ? ORDER BY "offset" LIMIT ?'
)
ES_TOPIC = "benchmarks.stream:StepDone"


# -- payloads ------------------------------------------------------------------


def dumps(payload: dict[str, Any]) -> str:
    """JSON text of a payload, encoded by the store's own encoder (so the peers spend
    what the store spends on encoding)."""
    return encode_json(payload)


def _base_payload() -> dict[str, Any]:
    """One realistic agent event, its summary padded so the JSON is ~200 bytes."""
    base: dict[str, Any] = {
        "agent": "executor-3",
        "step": 0,
        "phase": "implement",
        "path": "src/app/db/repository.py",
        "status": "ok",
        "summary": "",
    }
    words = (
        "Replaced the raw SQL in get_user_by_email with the repository helper, "
        "added an index on users.email and a regression test for the empty result. "
    )
    base["summary"] = words[: max(PAYLOAD_BYTES - len(dumps(base)), 0)]
    return base


BASE_PAYLOAD = _base_payload()


def make_payload(step: int) -> dict[str, Any]:
    """A fresh payload dict for one event (every producer builds one per event)."""
    payload = dict(BASE_PAYLOAD)
    payload["step"] = step
    return payload


# -- statistics ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Runs:
    """Repeated measurements of one figure."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, fmt: str = ",.0f") -> str:
        """``min-max`` over the runs, or ``1 run``."""
        if len(self.values) < 2:
            return "1 run"
        return f"{min(self.values):{fmt}}-{max(self.values):{fmt}}"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): a value that was actually observed."""
    ordered = sorted(samples)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def out(text: str = "") -> None:
    """Print a line of the report at once (runs are long; show progress)."""
    print(text, flush=True)


# -- schema helpers --------------------------------------------------------------


def create_schema(path: Path) -> None:
    """Create the store's exact schema (imported from ``stream/sqlite.py``) in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


def count_rows(path: Path, table: str = "events") -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def expect_rows(path: Path, expected: int, table: str = "events") -> None:
    """Check, outside the timing, that every event of a run really landed."""
    found = count_rows(path, table)
    if found != expected:
        raise RuntimeError(f"{path.name}: expected {expected} rows in {table}, found {found}")


def synchronous_of(conn: sqlite3.Connection) -> str:
    """The connection's ``PRAGMA synchronous``, by name (FULL, NORMAL, ...)."""
    return SYNC_NAMES.get(int(conn.execute("PRAGMA synchronous").fetchone()[0]), "?")


def remove_db(path: Path) -> None:
    """Delete a database file with its ``-wal`` and ``-shm`` companions."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@lru_cache(maxsize=64)
def insert_sql(rows: int) -> str:
    """One multi-row INSERT, the statement the store uses for a batch."""
    values = ",".join(["(?,?,?,?,?,?)"] * rows)
    return f'INSERT INTO events (type, actor, "to", payload, ts, key) VALUES {values}'


# -- 1. write throughput -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Events per second of one run, and the ``synchronous`` setting read back."""

    rate: float
    synchronous: str


async def write_ours(path: Path, producers: int, per_producer: int) -> WriteResult:
    """Ours: ``producers`` coroutines each awaiting ``store.append`` ``per_producer`` times."""
    store = await open_store(path)
    try:
        await store.append(EVENT_TYPE, make_payload(-1))  # warm-up: opens the writer

        async def producer(k: int) -> None:
            base = k * per_producer
            for i in range(per_producer):
                await store.append(EVENT_TYPE, make_payload(base + i))

        started = time.perf_counter()
        await asyncio.gather(*(producer(k) for k in range(producers)))
        elapsed = time.perf_counter() - started
        # Read the setting back from the store's writer connection (private, so defensive).
        writer = getattr(store, "_writer", None)
        sync = "?"
        if isinstance(writer, aiosqlite.Connection):
            rows = list(await writer.execute_fetchall("PRAGMA synchronous"))
            sync = SYNC_NAMES.get(int(rows[0][0]), "?")
    finally:
        await store.close()
    expect_rows(path, producers * per_producer + 1)
    return WriteResult(producers * per_producer / elapsed, sync)


class RawGroupCommitWriter:
    """The limit: raw ``sqlite3`` in one dedicated thread, group commit.

    Producers hand rows over through a thread-safe queue and await a future; the thread
    drains the queue (up to the store's ``MAX_BATCH_ROWS``) into ``BEGIN IMMEDIATE``,
    one multi-row INSERT (the store's statement) and ``COMMIT``, then resolves the whole
    batch's futures with one ``call_soon_threadsafe``.
    """

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[str, str, asyncio.Future[int]] | None] = (
            queue.SimpleQueue()
        )
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute("PRAGMA synchronous = FULL")
        self.synchronous = synchronous_of(self._conn)
        self._thread = threading.Thread(target=self._run, name="raw-writer", daemon=True)
        self._thread.start()

    def submit(self, event_type: str, payload_json: str) -> asyncio.Future[int]:
        """Queue one event; the future resolves to its offset once committed."""
        future: asyncio.Future[int] = self._loop.create_future()
        self._queue.put((event_type, payload_json, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        conn = self._conn
        while True:
            first = get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH_ROWS:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            ts = time.time()
            params: list[Any] = []
            for event_type, payload_json, _ in batch:
                params += (event_type, None, None, payload_json, ts, None)
            futures = [future for _, _, future in batch]
            try:
                conn.execute("BEGIN IMMEDIATE")
                last = conn.execute(insert_sql(len(batch)), params).lastrowid
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self._loop.call_soon_threadsafe(_fail_all, futures, exc)
            else:
                assert last is not None
                self._loop.call_soon_threadsafe(_resolve_all, futures, last - len(batch) + 1)
            if stop:
                return


def _resolve_all(futures: list[asyncio.Future[int]], first: int) -> None:
    for i, future in enumerate(futures):
        if not future.done():
            future.set_result(first + i)


def _fail_all(futures: list[asyncio.Future[int]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


async def write_raw_thread(path: Path, producers: int, per_producer: int) -> WriteResult:
    """(a) The limit: the same producer coroutines as ours, feeding a raw ``sqlite3``
    writer thread instead of the store."""
    create_schema(path)
    writer = RawGroupCommitWriter(path, asyncio.get_running_loop())
    try:
        await writer.submit(EVENT_TYPE, dumps(make_payload(-1)))  # warm-up

        async def producer(k: int) -> None:
            base = k * per_producer
            for i in range(per_producer):
                await writer.submit(EVENT_TYPE, dumps(make_payload(base + i)))

        started = time.perf_counter()
        await asyncio.gather(*(producer(k) for k in range(producers)))
        elapsed = time.perf_counter() - started
    finally:
        writer.close()
    expect_rows(path, producers * per_producer + 1)
    return WriteResult(producers * per_producer / elapsed, writer.synchronous)


async def write_naive(path: Path, producers: int, per_producer: int) -> WriteResult:
    """(b) The naive pattern: one aiosqlite connection, one INSERT + COMMIT per event,
    the producers taking turns on an ``asyncio.Lock``."""
    create_schema(path)
    db = await aiosqlite.connect(path)  # default isolation: the INSERT opens a transaction
    try:
        await db.execute("PRAGMA busy_timeout = 5000")
        await db.execute("PRAGMA synchronous = FULL")
        rows = list(await db.execute_fetchall("PRAGMA synchronous"))
        sync = SYNC_NAMES.get(int(rows[0][0]), "?")
        lock = asyncio.Lock()

        async def insert(payload: dict[str, Any]) -> None:
            payload_json = dumps(payload)
            async with lock:
                await db.execute(
                    INSERT_ONE, (EVENT_TYPE, None, None, payload_json, time.time(), None)
                )
                await db.commit()

        await insert(make_payload(-1))  # warm-up

        async def producer(k: int) -> None:
            base = k * per_producer
            for i in range(per_producer):
                await insert(make_payload(base + i))

        started = time.perf_counter()
        await asyncio.gather(*(producer(k) for k in range(producers)))
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
    expect_rows(path, producers * per_producer + 1)
    return WriteResult(producers * per_producer / elapsed, sync)


class FullSyncPool(SQLiteConnectionPool):
    """eventsourcing's pool, with ``synchronous=FULL`` set on every new connection.

    eventsourcing 9.x sets WAL but leaves ``synchronous`` at SQLite's default; the
    default seen on each connection is recorded in ``defaults`` before forcing FULL,
    and the value read back afterwards in ``settings``.
    """

    def __init__(self, *, db_name: str) -> None:
        super().__init__(db_name=db_name)
        self.defaults: set[str] = set()
        self.settings: set[str] = set()

    def _create_connection(self) -> SQLiteConnection:
        conn = super()._create_connection()
        raw: sqlite3.Connection = conn._sqlite_conn
        self.defaults.add(synchronous_of(raw))
        raw.execute("PRAGMA synchronous = FULL")
        self.settings.add(synchronous_of(raw))
        return conn


def write_eventsourcing(path: Path, producers: int, per_producer: int) -> WriteResult:
    """(c) eventsourcing's SQLite application recorder: one thread per producer (its
    model: a thread per request), one aggregate per producer, and one
    ``insert_events`` call per event, each its own transaction."""
    datastore = SQLiteDatastore(str(path))
    datastore.pool.close()
    pool = FullSyncPool(db_name=str(path))
    datastore.pool = pool
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    warm = StoredEvent(uuid.uuid4(), 1, ES_TOPIC, dumps(make_payload(-1)).encode())
    recorder.insert_events([warm])

    barrier = threading.Barrier(producers + 1)
    errors: list[BaseException] = []

    def producer(k: int) -> None:
        originator = uuid.uuid4()
        base = k * per_producer
        barrier.wait()
        try:
            for i in range(per_producer):
                state = dumps(make_payload(base + i)).encode()
                recorder.insert_events([StoredEvent(originator, i + 1, ES_TOPIC, state)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(producers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    datastore.close()
    if errors:
        raise RuntimeError(f"eventsourcing producer failed: {errors[0]!r}")
    expect_rows(path, producers * per_producer + 1, table="stored_events")
    setting = "/".join(sorted(pool.settings))
    default = "/".join(sorted(pool.defaults))
    return WriteResult(producers * per_producer / elapsed, f"{setting} (library default {default})")


@dataclass(frozen=True, slots=True)
class WriteFigures:
    """Medians and spreads of the four write contenders."""

    ours: Runs
    raw: Runs
    naive: Runs
    es: Runs
    sync: dict[str, str]
    producers: int
    per_producer: int


async def bench_write(tmp: Path, producers: int, per_producer: int, reps: int) -> WriteFigures:
    """Run the four contenders ``reps`` times, interleaved (in a rotating order), each on
    a fresh file, timing only the producers' appends (after one warm-up append each)."""
    total = producers * per_producer
    out(
        f"## 1. Durable write throughput: {producers} producers x {per_producer} events "
        f"= {total:,} events, WAL + synchronous=FULL, {reps} run(s) each"
    )
    contenders: dict[str, Callable[[Path], Awaitable[WriteResult]]] = {
        "ours": lambda p: write_ours(p, producers, per_producer),
        "raw": lambda p: write_raw_thread(p, producers, per_producer),
        "naive": lambda p: write_naive(p, producers, per_producer),
        "es": lambda p: asyncio.to_thread(write_eventsourcing, p, producers, per_producer),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    sync: dict[str, str] = {}
    names = list(contenders)
    for rep in range(reps):
        # Rotate the order each run, so no contender always follows the same one.
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            path = tmp / f"write-{name}-{rep}.db"
            result = await contenders[name](path)
            rates[name].append(result.rate)
            sync[name] = result.synchronous
            remove_db(path)
        out(
            f"   run {rep + 1}: "
            + ", ".join(f"{n} {r[-1]:,.0f}/s" for n, r in rates.items())
            + f"  (this run's ours/(a) {rates['ours'][-1] / rates['raw'][-1]:.2f})"
        )
    figures = WriteFigures(
        ours=Runs(tuple(rates["ours"])),
        raw=Runs(tuple(rates["raw"])),
        naive=Runs(tuple(rates["naive"])),
        es=Runs(tuple(rates["es"])),
        sync=sync,
        producers=producers,
        per_producer=per_producer,
    )
    labels = {
        "ours": f"ours: store.append, {producers} coroutines, group commit",
        "raw": "(a) raw sqlite3 writer thread, group commit (the limit)",
        "naive": "(b) aiosqlite, INSERT+COMMIT per event, asyncio.Lock",
        "es": f"(c) eventsourcing SQLiteApplicationRecorder, {producers} threads",
    }
    for name, runs in zip(
        contenders, (figures.ours, figures.raw, figures.naive, figures.es), strict=True
    ):
        out(
            f"   {labels[name]:<62} {runs.median:>9,.0f} ev/s  (spread {runs.spread()}, "
            f"synchronous={sync[name]})"
        )
    m = figures.ours.median
    paired = statistics.median(o / r for o, r in zip(rates["ours"], rates["raw"], strict=True))
    out(
        f"   ours/(a) = {m / figures.raw.median:.2f}   (target >= 0.8; median of the per-run "
        f"ratios {paired:.2f})"
    )
    out(f"   ours/(b) = {m / figures.naive.median:.1f}    (target >= 8)")
    out(f"   ours/(c) = {m / figures.es.median:.1f}    (target > 1)")
    out()
    return figures


# -- 2. replay -------------------------------------------------------------------------


def build_replay_db(path: Path, events: int) -> None:
    """Create the log with ``open_store`` (so the schema is the store's), then bulk-insert
    ``events`` rows with raw ``sqlite3`` in big transactions, and checkpoint the WAL."""

    async def create() -> None:
        store = await open_store(path)
        await store.close()

    asyncio.run(create())
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # building only; the reads are what count
        ts0 = time.time() - events * 1e-3
        chunk = 50_000
        for start in range(0, events, chunk):
            rows = [
                (
                    EVENT_TYPE,
                    f"executor-{i % 8}",
                    None,
                    dumps(make_payload(i)),
                    ts0 + i * 1e-3,
                    None,
                )
                for i in range(start, min(start + chunk, events))
            ]
            conn.execute("BEGIN")
            conn.executemany(INSERT_ONE, rows)
            conn.execute("COMMIT")
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"could not checkpoint {path.name}: the reads would hit the WAL")
    finally:
        conn.close()


async def replay_ours(path: Path, page_size: int, expected: int) -> float:
    """Ours: ``store.read(next_offset, page_size)`` from offset 0 to the end."""
    store = await open_store(path, create=False)
    try:
        await store.head()  # warm-up: the reader connection is open and used
        count = 0
        next_offset = 0
        started = time.perf_counter()
        while True:
            page = await store.read(next_offset, page_size)
            if not page.events:
                break
            count += len(page.events)
            next_offset = page.next_offset
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    if count != expected:
        raise RuntimeError(f"ours replayed {count} events, expected {expected}")
    return count / elapsed


def replay_raw(path: Path, page_size: int, expected: int) -> float:
    """Raw: keyset paging on a plain ``sqlite3`` connection, each payload ``json.loads``-ed
    into a row tuple (the same data ours hands back, without the Event objects)."""
    conn = sqlite3.connect(path, isolation_level=None)
    loads = json.loads
    try:
        conn.execute("SELECT 1").fetchall()
        count = 0
        next_offset = 0
        started = time.perf_counter()
        while True:
            rows = conn.execute(SELECT_PAGE, (next_offset, page_size)).fetchall()
            if not rows:
                break
            decoded = [(o, t, a, r, loads(p), ts, k) for o, t, a, r, p, ts, k in rows]
            count += len(decoded)
            next_offset = decoded[-1][0] + 1
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    if count != expected:
        raise RuntimeError(f"raw replayed {count} events, expected {expected}")
    return count / elapsed


@dataclass(frozen=True, slots=True)
class ReplayFigures:
    """Events per second replayed, by page size: (ours, raw)."""

    events: int
    by_page: dict[int, tuple[Runs, Runs]]


def bench_replay(tmp: Path, events: int, page_sizes: Sequence[int], reps: int) -> ReplayFigures:
    """Build the log once, then replay it with each page size, ours and raw interleaved."""
    out(
        f"## 2. Replay: {events:,} events (~{PAYLOAD_BYTES} B payloads), read from offset 0 "
        f"in pages, payloads decoded, {reps} run(s) each"
    )
    path = tmp / "replay.db"
    started = time.perf_counter()
    build_replay_db(path, events)
    size_mb = path.stat().st_size / 1e6
    out(f"   built in {time.perf_counter() - started:.1f} s ({size_mb:,.0f} MB)")
    replay_raw(path, page_sizes[0], events)  # warm the page cache for both readers
    by_page: dict[int, tuple[Runs, Runs]] = {}
    for page_size in page_sizes:
        ours: list[float] = []
        raw: list[float] = []
        for _ in range(reps):
            ours.append(asyncio.run(replay_ours(path, page_size, events)))
            raw.append(replay_raw(path, page_size, events))
        by_page[page_size] = (Runs(tuple(ours)), Runs(tuple(raw)))
        o, r = by_page[page_size]
        out(
            f"   page {page_size:>5}: ours {o.median:>9,.0f} ev/s (spread {o.spread()})   "
            f"raw {r.median:>9,.0f} ev/s (spread {r.spread()})   "
            f"ours/raw = {o.median / r.median:.2f} (target >= 0.7)"
        )
    out()
    return ReplayFigures(events, by_page)


# -- 3. tail latency ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailFigures:
    """Latencies in seconds, one sample per event."""

    from_start: list[float]  # append() called (payload stamp) -> event yielded by tail
    from_commit: list[float]  # append() returned (committed) -> event yielded by tail
    commit: list[float]  # append() call duration

    def describe(self) -> str:
        ms = 1000
        return (
            f"append-start->arrival p50 {percentile(self.from_start, 50) * ms:.2f} ms, "
            f"p99 {percentile(self.from_start, 99) * ms:.2f} ms | "
            f"commit->arrival p50 {percentile(self.from_commit, 50) * ms:.2f} ms, "
            f"p99 {percentile(self.from_commit, 99) * ms:.2f} ms | "
            f"append() p50 {percentile(self.commit, 50) * ms:.2f} ms, "
            f"p99 {percentile(self.commit, 99) * ms:.2f} ms"
        )


Record = tuple[int, float, float]  # offset, t0 (just before append), returned


async def append_spaced(store: EventStore, n: int, seed: int) -> list[Record]:
    """Append ``n`` events one at a time, 2-5 ms apart (after 3 unstamped warm-ups that
    open the writer). Each payload carries ``t0 = time.time()`` taken just before
    ``append``; ``returned`` is ``time.time()`` right after it returns (committed)."""
    rng = random.Random(seed)
    for _ in range(3):
        await store.append(EVENT_TYPE, {"warmup": True})
    records: list[Record] = []
    for i in range(n):
        payload = make_payload(i)
        t0 = time.time()
        payload["t0"] = t0
        offset = await store.append(EVENT_TYPE, payload)
        records.append((offset, t0, time.time()))
        await asyncio.sleep(rng.uniform(0.002, 0.005))
    return records


async def collect_arrivals(
    store: EventStore, start: int, n: int, ready: asyncio.Event
) -> dict[int, float]:
    """Tail ``store`` from ``start``; the ``time.time()`` at which each of the first ``n``
    stamped events was yielded, by offset (unstamped warm-ups are skipped)."""
    arrivals: dict[int, float] = {}
    tail = cast(AsyncGenerator[Event, None], store.tail(start))
    async with contextlib.aclosing(tail) as events:
        ready.set()
        async for event in events:
            now = time.time()
            if "t0" in event.payload:
                arrivals[event.offset] = now
                if len(arrivals) >= n:
                    break
    return arrivals


def tail_figures(records: list[Record], arrivals: dict[int, float]) -> TailFigures:
    """Pair each appended event with its arrival at the tail."""
    missing = [offset for offset, _, _ in records if offset not in arrivals]
    if missing:
        raise RuntimeError(f"{len(missing)} events never reached the tail, e.g. {missing[:3]}")
    return TailFigures(
        from_start=[arrivals[o] - t0 for o, t0, _ in records],
        from_commit=[arrivals[o] - t1 for o, _, t1 in records],
        commit=[t1 - t0 for _, t0, t1 in records],
    )


async def tail_in_process(path: Path, n: int) -> TailFigures:
    """A tail task and an appender on one store in one process.

    Method: ``t0 = time.time()`` goes into the payload just before ``append``; the tail
    stamps ``time.time()`` when the event is yielded. ``arrival - t0`` includes the
    commit itself; ``arrival - returned`` is commit-to-arrival. In one event loop the
    appender resumes before the tail does (its future is resolved first), so
    commit-to-arrival also holds the appender's own turn up to its ``sleep``.
    """
    store = await open_store(path)
    try:
        ready = asyncio.Event()
        collector = asyncio.create_task(collect_arrivals(store, await store.head() + 1, n, ready))
        await asyncio.wait_for(ready.wait(), timeout=10)
        await asyncio.sleep(0.05)  # the tail is open and its poller running
        records = await append_spaced(store, n, seed=1)
        arrivals = await asyncio.wait_for(collector, timeout=30)
    finally:
        await store.close()
    return tail_figures(records, arrivals)


async def child_appender(path: Path, n: int) -> None:
    """The cross-process appender (``--child-appender DB N``): appends to an existing
    log and prints its records as one JSON line on stdout."""
    store = await open_store(path, create=False)
    try:
        records = await append_spaced(store, n, seed=2)
    finally:
        await store.close()
    print(json.dumps(records), flush=True)


async def tail_cross_process(path: Path, n: int) -> TailFigures:
    """The parent tails; a child process appends with the same stamps and reports
    (offset, t0, returned) on stdout. Both stamp with ``time.time()``: one clock, one
    machine. The parent sees the child's commits through the store's own change
    detection (``PRAGMA data_version`` polling)."""
    store = await open_store(path)
    try:
        ready = asyncio.Event()
        collector = asyncio.create_task(collect_arrivals(store, await store.head() + 1, n, ready))
        await asyncio.wait_for(ready.wait(), timeout=10)
        await asyncio.sleep(0.05)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.stream",
            "--child-appender",
            str(path),
            str(n),
            cwd=PROJECT_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await asyncio.wait_for(child.communicate(), timeout=120)
        if child.returncode != 0:
            collector.cancel()
            raise RuntimeError(f"child appender exited with {child.returncode}")
        arrivals = await asyncio.wait_for(collector, timeout=30)
    finally:
        await store.close()
    lines = stdout.decode().splitlines()
    records = [(int(o), float(t0), float(t1)) for o, t0, t1 in json.loads(lines[-1])]
    return tail_figures(records, arrivals)


async def bench_tail(tmp: Path, n: int) -> tuple[TailFigures, TailFigures]:
    out(f"## 3. Tail latency: {n} events appended one at a time, 2-5 ms apart")
    local = await tail_in_process(tmp / "tail-local.db", n)
    out(f"   in-process:    {local.describe()}")
    remote = await tail_cross_process(tmp / "tail-remote.db", n)
    out(f"   cross-process: {remote.describe()}")
    out()
    return local, remote


# -- summary -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def rate_cell(runs: Runs) -> str:
    """A median rate with its spread over the runs."""
    if len(runs.values) < 2:
        return f"{runs.median:,.0f} ev/s"
    return f"{runs.median:,.0f} ev/s ({runs.spread()})"


def summary(
    write: WriteFigures | None,
    replay: ReplayFigures | None,
    tail: tuple[TailFigures, TailFigures] | None,
    default_page: int,
) -> str:
    """The markdown table of every figure: ours, the peer, the ratio, target and verdict.
    Rates are medians, with the min-max over the runs in parentheses."""
    lines = [
        "| Figure | Ours | Peer | Ours/peer | Target | Result |",
        "|---|---:|---:|---:|---|---|",
    ]
    if write is not None:
        ours = write.ours.median
        checks: tuple[tuple[str, Runs, str, Callable[[float], bool]], ...] = (
            (
                "(a) raw sqlite3 writer thread, group commit",
                write.raw,
                ">= 0.8",
                lambda r: r >= 0.8,
            ),
            ("(b) aiosqlite, commit per event + lock", write.naive, ">= 8", lambda r: r >= 8),
            ("(c) eventsourcing SQLite recorder, threads", write.es, "> 1", lambda r: r > 1),
        )
        for label, peer, target, ok in checks:
            ratio = ours / peer.median
            lines.append(
                f"| Write {write.producers}x{write.per_producer}, FULL: ours vs {label} | "
                f"{rate_cell(write.ours)} | "
                f"{rate_cell(peer)} | {ratio:.2f} | {target} | {verdict(ok(ratio))} |"
            )
    if replay is not None:
        for page_size, (ours_runs, raw_runs) in replay.by_page.items():
            ratio = ours_runs.median / raw_runs.median
            tag = " (default)" if page_size == default_page else ""
            lines.append(
                f"| Replay {replay.events:,}, page {page_size}{tag}: ours vs raw keyset + "
                f"json.loads | {rate_cell(ours_runs)} | {rate_cell(raw_runs)} | {ratio:.2f} | "
                f">= 0.7 | {verdict(ratio >= 0.7)} |"
            )
    if tail is not None:
        ms = 1000
        for label, figures, limit in (
            ("in-process", tail[0], 5.0),
            ("cross-process", tail[1], 25.0),
        ):
            n = len(figures.from_start)
            p50 = percentile(figures.from_start, 50) * ms
            p99 = percentile(figures.from_start, 99) * ms
            lines.append(
                f"| Tail {label} ({n} events), append start -> arrival, p50 / p99 | "
                f"{p50:.2f} / {p99:.2f} ms | | | p99 < {limit:g} ms | {verdict(p99 < limit)} |"
            )
            c50 = percentile(figures.from_commit, 50) * ms
            c99 = percentile(figures.from_commit, 99) * ms
            lines.append(
                f"| Tail {label}, commit (append returned) -> arrival, p50 / p99 | "
                f"{c50:.2f} / {c99:.2f} ms | | | context | |"
            )
            a50 = percentile(figures.commit, 50) * ms
            a99 = percentile(figures.commit, 99) * ms
            lines.append(
                f"| Tail {label}, append() call (the commit), p50 / p99 | "
                f"{a50:.2f} / {a99:.2f} ms | | | context | |"
            )
    return "\n".join(lines)


# -- entry point -----------------------------------------------------------------------------


def environment() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    return (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"aiosqlite {version('aiosqlite')}, eventsourcing {version('eventsourcing')}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    )


def load_average() -> str:
    """1/5/15-minute load: anything else running on these cores skews the figures."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream",
        description="Benchmark the SQLite event store against raw sqlite3, the naive "
        "aiosqlite pattern and eventsourcing, in one run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller run: 1 repetition, 100,000 replay events, 100 tail events",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="replay log size (default 1,000,000; 100,000 with --quick)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions per measurement (default 5; 1 with --quick)",
    )
    parser.add_argument(
        "--tail-events",
        type=int,
        default=None,
        help="events for each tail latency run (default 500; 100 with --quick)",
    )
    parser.add_argument("--producers", type=int, default=50, help="concurrent writers (50)")
    parser.add_argument(
        "--per-producer", type=int, default=200, help="events each writer appends (200)"
    )
    parser.add_argument(
        "--page-sizes",
        type=int,
        nargs="+",
        default=[1000, 5000],
        help="replay page sizes; the first is the default page (1000)",
    )
    parser.add_argument(
        "--only",
        choices=["write", "replay", "tail"],
        action="append",
        help="run only these sections (repeatable)",
    )
    parser.add_argument(
        "--child-appender", nargs=2, metavar=("DB", "N"), help=argparse.SUPPRESS
    )  # internal: the cross-process appender
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_appender:
        db, n = args.child_appender
        asyncio.run(child_appender(Path(db), int(n)))
        return 0

    reps = args.reps if args.reps is not None else (1 if args.quick else 5)
    events = args.events if args.events is not None else (100_000 if args.quick else 1_000_000)
    tail_n = args.tail_events if args.tail_events is not None else (100 if args.quick else 500)
    sections = set(args.only or ["write", "replay", "tail"])
    out(f"# sisyphus-tui stream benchmark{' (quick)' if args.quick else ''}")
    out(f"   {environment()}")
    out(f"   load average at start: {load_average()}")
    out(
        f"   payload: {len(dumps(make_payload(1234)))} bytes of JSON, e.g. "
        f"{dumps(make_payload(1234))[:72]}..."
    )
    out()

    started = time.perf_counter()
    write = replay = tail = None
    with tempfile.TemporaryDirectory(prefix="sisyphus-bench-") as name:
        tmp = Path(name)
        if "write" in sections:
            write = asyncio.run(bench_write(tmp, args.producers, args.per_producer, reps))
        if "replay" in sections:
            replay = bench_replay(tmp, events, args.page_sizes, reps)
        if "tail" in sections:
            tail = asyncio.run(bench_tail(tmp, tail_n))
    out(
        f"## Summary ({time.perf_counter() - started:.0f} s; write and replay: medians of "
        f"{reps} run(s), min-max in parentheses; tail: one run, percentiles over its events)"
    )
    out(f"   load average at end: {load_average()}")
    out()
    out(summary(write, replay, tail, args.page_sizes[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
