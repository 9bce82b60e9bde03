"""The SQLite event store (aiosqlite, WAL, ``synchronous=FULL``), with group commit.

Appends from any number of coroutines go through one queue; a single writer task
drains it into one ``BEGIN IMMEDIATE`` transaction per batch (a multi-row INSERT
and a COMMIT, in one hop to the connection thread), so N concurrent producers cost
one fsync per batch. Offsets are the rowid, decided inside the write transaction,
so several processes can append to one file and offsets stay gap-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import sqlite3
import stat
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from sisyphus_tui.errors import (
    DatabaseError,
    DatabaseFull,
    DatabaseIOError,
    DatabaseLocked,
    DatabaseMissing,
    DatabaseReadOnly,
    DatabaseUnsafe,
    NotADatabase,
    SchemaTooNew,
)
from sisyphus_tui.stream.base import (
    UNDECODABLE,
    Event,
    EventStore,
    NewEvent,
    Page,
    search_form,
)
from sisyphus_tui.stream.lease import HostInfo, HostLease, current_host

T = TypeVar("T")

SCHEMA_VERSION = 1
# Marks a file as a sisyphus log ("SISY"), so a foreign SQLite file is refused untouched.
APPLICATION_ID = 0x53495359
DEFAULT_BUSY_TIMEOUT_MS = 5000
# SQLite allows 32766 bound parameters per statement; five per row, and the time stamp.
MAX_BATCH_ROWS = 4000
POLL_INTERVAL_S = 0.01

SCHEMA = (
    """CREATE TABLE events (
        "offset" INTEGER PRIMARY KEY,
        type     TEXT NOT NULL,
        actor    TEXT,
        "to"     TEXT,
        payload  TEXT NOT NULL,
        ts       REAL NOT NULL,
        key      TEXT UNIQUE
    )""",
    'CREATE INDEX events_to ON events ("to", "offset") WHERE "to" IS NOT NULL',
    'CREATE INDEX events_type ON events (type, "offset")',
    # An actor's last checkpoint in O(log n), whatever the log's size.
    'CREATE INDEX events_actor ON events (actor, type, "offset") WHERE actor IS NOT NULL',
    # Append-only is enforced by the database too, not only by the code.
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
    """CREATE TABLE cursors (
        agent    TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        ts       REAL NOT NULL
    )""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
    f"PRAGMA application_id = {APPLICATION_ID}",
)

UPSERT_CURSOR = (
    "INSERT INTO cursors (agent, position, ts) VALUES (?, ?, ?) "
    "ON CONFLICT (agent) DO UPDATE SET position = max(position, excluded.position), "
    "ts = excluded.ts"
)
COLUMNS = 'SELECT "offset", type, actor, "to", payload, ts, key FROM events'


@lru_cache(maxsize=128)
def _insert_sql(rows: int) -> str:
    # ?1 is the batch's time stamp, shared by every row; each row binds the five fields
    # of a NewEvent in order, so a batch's parameters are its events chained together.
    values = ",".join(
        f"(?{i},?{i + 1},?{i + 2},?{i + 3},?{i + 4},?1)" for i in range(2, 5 * rows + 2, 5)
    )
    return f'INSERT INTO events (type, actor, "to", payload, key, ts) VALUES {values}'


def _translate(exc: sqlite3.Error, path: Path) -> DatabaseError:
    """Turn a sqlite3 error into one of ours, with a one-line message naming the file."""
    text = str(exc).lower()
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text \
            or "busy" in text:
        return DatabaseLocked(f"database is locked by another process: {path}")
    if code == sqlite3.SQLITE_FULL or "disk is full" in text:
        return DatabaseFull(f"disk full: cannot write the database: {path}")
    if code == sqlite3.SQLITE_IOERR or "disk i/o error" in text:
        return DatabaseIOError(f"I/O error on the database: {path}")
    if "readonly" in text or "read-only" in text:
        return DatabaseReadOnly(f"database is read-only: {path}")
    if "not a database" in text or "malformed" in text:
        return NotADatabase(f"not a sisyphus database (not SQLite, or damaged): {path}")
    if "unable to open" in text:
        return DatabaseMissing(f"cannot open database: {path}")
    return DatabaseError(f"database error on {path}: {exc}")


# A request waiting for the writer: its events, a cursor to advance with them, and the
# future that gets their offsets. (A plain tuple: one is built per append.)
_Request = tuple[Sequence[NewEvent], "tuple[str, int] | None", "asyncio.Future[list[int]]"]


def _write_batch(conn: sqlite3.Connection, requests: list[_Request]) -> list[list[int]]:
    """Commit a batch of requests in one transaction, in the connection's thread (one
    hop per batch); returns each request's offsets.

    Optimistic about idempotency keys: the events go in as they are, and only if a key
    is already in the log (maybe written by another process) or repeated within the
    batch does the UNIQUE index refuse them; the batch is then rolled back, its keys
    looked up and laid out again so that each known key resolves to its offset.
    """
    cursors = [(c[0], c[1], time.time()) for _, c, _ in requests if c is not None]
    rows: list[NewEvent] = list(chain.from_iterable(events for events, _, _ in requests))
    try:
        last = _insert_rows(conn, rows, cursors)
    except sqlite3.IntegrityError:
        pass
    else:
        offsets: list[list[int]] = []
        offset = last - len(rows) + 1
        for events, _, _ in requests:
            n = len(events)
            offsets.append([offset] if n == 1 else list(range(offset, offset + n)))
            offset += n
        return offsets
    for _attempt in range(5):
        existing = _lookup_keys(conn, [ev.key for ev in rows if ev.key is not None])
        plan = _plan(requests, existing)
        try:
            last = _insert_rows(conn, plan.rows, cursors)
        except sqlite3.IntegrityError:
            continue  # another process wrote one of the keys meanwhile: look again
        first = last - len(plan.rows) + 1
        return [
            [first + value if is_row else value for is_row, value in slots]
            for slots in plan.slots
        ]
    raise sqlite3.OperationalError("could not resolve idempotency keys")


def _insert_rows(conn: sqlite3.Connection, rows: list[NewEvent],
                 cursors: list[tuple[str, int, float]]) -> int:
    """Insert the rows and advance the cursors in one transaction; returns the last
    rowid. Rolls back and re-raises on any error."""
    last = 0
    ts = time.time()
    try:
        # One statement per MAX_BATCH_ROWS rows (SQLite's bound-parameter limit); one
        # request larger than that still commits in this one transaction.
        for start in range(0, len(rows), MAX_BATCH_ROWS):
            chunk = rows[start : start + MAX_BATCH_ROWS]
            params: list[Any] = [ts]
            params.extend(chain.from_iterable(chunk))
            cursor = conn.execute(_insert_sql(len(chunk)), params)
            last = int(cursor.lastrowid or 0)
        if cursors:
            conn.executemany(UPSERT_CURSOR, cursors)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return last


def _lookup_keys(conn: sqlite3.Connection, keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f'SELECT key, "offset" FROM events WHERE key IN ({marks})', chunk)
        found.update({str(k): int(o) for k, o in rows})
    return found


async def _in_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` in the connection's own thread: one hop for
    what would otherwise be one await per statement (aiosqlite's ``_execute`` is the
    documented-in-code way its own methods do this)."""
    result: T = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return result


def _loads(text: str) -> Any:
    """Decode a stored payload: orjson (about 3x faster than json, which matters when a
    log is replayed), falling back to json for what orjson refuses: lone surrogate
    escapes, which versions before the payload limits wrote. (An integer beyond 64 bits
    from those versions is read by orjson as an approximate float, not refused.) A
    payload neither can read (bit rot), or that is not a JSON object, comes back as
    ``{UNDECODABLE: why}``: one bad row never stops a reader."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = _loads_slowly(text)
    return value if value.__class__ is dict else _undecodable(
        f"the payload is a JSON {type(value).__name__}, not an object")


def _loads_slowly(text: str) -> Any:
    if not isinstance(text, str):
        return _undecodable(f"the payload is stored as {type(text).__name__}, not text")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _undecodable(f"undecodable payload: {str(exc)[:120]}")
    # orjson refuses lone surrogates ("\\ud800"), which json lets through: text no
    # terminal or encoder can take. They are shown as the escape they were written as.
    if isinstance(value, dict) and _has_surrogates(json.dumps(value, ensure_ascii=False)):
        return _visible(value)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _visible(value: Any) -> Any:
    """``value`` with every lone surrogate in its text written out as ``\\udXXX``."""
    if isinstance(value, str):
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    if isinstance(value, dict):
        return {_visible(k): _visible(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible(v) for v in value]
    return value


def _undecodable(why: str) -> dict[str, Any]:
    return {UNDECODABLE: why}


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _fetch_events(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Event]:
    loads = _loads
    # tuple.__new__ skips the named tuple's Python-level __new__: a third of the cost
    # per event when replaying a large log.
    new = tuple.__new__
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc).lower():
            raise
        rows = _fetch_tolerantly(conn, sql, params)
    return [new(Event, (o, t, a, r, loads(p), ts, k)) for o, t, a, r, p, ts, k in rows]


def _fetch_tolerantly(conn: sqlite3.Connection, sql: str, params: Sequence[Any]
                      ) -> list[Any]:
    """The rows of a page that holds text that is not UTF-8 (bit rot): its names are
    shown with U+FFFD, its payload comes back undecodable, the other rows as they are.
    (In the connection's own thread, so changing its text factory is safe.)"""
    factory = conn.text_factory
    conn.text_factory = lambda data: data.decode("utf-8", "surrogateescape")
    try:
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.text_factory = factory

    def clean(value: Any) -> Any:
        if isinstance(value, str) and _has_surrogates(value):
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return value

    def payload(value: Any) -> Any:
        if isinstance(value, str) and _has_surrogates(value):
            return json.dumps(_undecodable("the payload is not valid UTF-8"))
        return value

    return [(o, clean(t), clean(a), clean(r), payload(p), ts, clean(k))
            for o, t, a, r, p, ts, k in rows]


def _filters(*, to: str | None, types: Sequence[str] | None,
             actor: str | None) -> tuple[str, list[Any]]:
    """The WHERE clauses (each starting with AND) and parameters of the shared filters."""
    sql = ""
    params: list[Any] = []
    if to is not None:
        sql += ' AND "to" = ?'
        params.append(to)
    if types:
        sql += f" AND type IN ({','.join('?' * len(types))})"
        params.extend(types)
    if actor is not None:
        sql += " AND actor = ?"
        params.append(actor)
    return sql, params


_LOWER = "sisyphus_lower"
_PAYLOAD_FOLD = "sisyphus_payload_fold"


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _payload_fold(value: Any) -> Any:
    """A stored payload in its search form (``search_form``), lower-cased. A payload
    written with ``\\u`` escapes (older versions, other writers) is read and written
    again, so ``café`` is found however it was stored."""
    if not isinstance(value, str):
        return value
    if "\\u" in value:
        decoded = _loads(value)
        if UNDECODABLE not in decoded:
            value = search_form(decoded)
    return value.lower()


def _match(conn: sqlite3.Connection, sql: str, params: Sequence[Any], folding: bool
           ) -> array[int]:
    """The offsets a query selects, straight into an array: a million of them take 8 MB,
    never a list of row tuples."""
    if folding:
        conn.create_function(_LOWER, 1, _lower, deterministic=True)
        conn.create_function(_PAYLOAD_FOLD, 1, _payload_fold, deterministic=True)
    found = array("q")
    cursor = conn.execute(sql, params)
    while rows := cursor.fetchmany(8192):
        found.extend([row[0] for row in rows])
    return found


@dataclass(slots=True)
class _Plan:
    """Rows to insert for a batch, with keys known or repeated folded together."""

    rows: list[NewEvent] = field(default_factory=list)
    # For each request, for each of its events: an index into rows, or a known offset.
    slots: list[list[tuple[bool, int]]] = field(default_factory=list)


def _plan(requests: list[_Request], existing: dict[str, int]) -> _Plan:
    """Lay out the rows of a batch: keys already in the log or repeated in the batch
    resolve to one offset instead of a new row."""
    plan = _Plan()
    row_of_key: dict[str, int] = {}
    rows = plan.rows
    for events, _, _ in requests:
        slots: list[tuple[bool, int]] = []
        for ev in events:
            key = ev.key
            if key is not None:
                if key in existing:
                    slots.append((False, existing[key]))
                    continue
                if key in row_of_key:
                    slots.append((True, row_of_key[key]))
                    continue
                row_of_key[key] = len(rows)
            slots.append((True, len(rows)))
            rows.append(ev)
        plan.slots.append(slots)
    return plan


class SQLiteStore(EventStore):
    """An EventStore on one SQLite file; open it with ``await SQLiteStore.open(path)``."""

    def __init__(self, path: Path, reader: aiosqlite.Connection, *, read_only: bool,
                 busy_timeout_ms: int) -> None:
        super().__init__()
        self.path = path
        self.read_only = read_only
        self._reader = reader
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        # A deque and a wake-up event: cheaper per append than an asyncio.Queue.
        self._pending: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._writer_task: asyncio.Task[None] | None = None
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def location(self) -> str:
        return str(self.path)

    # -- opening ---------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout_ms: int | None = None,
    ) -> SQLiteStore:
        """Open (and with ``create``, make) the log at ``path``.

        A missing file without ``create``, a newer schema, a foreign or damaged file
        are refused with one-line errors before anything is written to the file.
        A file that cannot be written opens read-only: reads work, appends refuse.
        A symbolic link, another user's file, or one others can write is refused (see
        ``_prepare_file``); so is an empty file when not ``create``.
        """
        # File checks touch the disk: keep them off the event loop.
        file, read_only = await asyncio.to_thread(_prepare_file, Path(path), create)
        timeout = busy_timeout_ms if busy_timeout_ms is not None else _env_busy_timeout()
        uri = file.as_uri() + ("?mode=ro" if read_only else "?mode=rw")
        try:
            reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise _translate(exc, file) from None
        try:
            await reader.execute(f"PRAGMA busy_timeout = {int(timeout)}")
            await _check_and_migrate(reader, file, read_only=read_only, create=create)
        except BaseException:
            await reader.close()
            raise
        return cls(file, reader, read_only=read_only, busy_timeout_ms=timeout)

    async def _open_writer(self) -> aiosqlite.Connection:
        if self.read_only:
            raise DatabaseReadOnly(f"database is read-only: {self.path}")
        try:
            # isolation_level="IMMEDIATE": the INSERT opens BEGIN IMMEDIATE itself, so a
            # batch costs two hops (insert, commit), and a write never fails with BUSY
            # after reading without first waiting for busy_timeout.
            writer = await aiosqlite.connect(
                self.path.as_uri() + "?mode=rw", uri=True, isolation_level="IMMEDIATE"
            )
            await writer.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await writer.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        return writer

    # -- writing ---------------------------------------------------------------

    def _commit(
        self, events: Sequence[NewEvent], cursor: tuple[str, int] | None
    ) -> asyncio.Future[list[int]]:
        if self._closed or self._stopping:  # (a closing writer takes no new requests)
            raise DatabaseError(f"store is closed: {self.path}")
        if self.read_only:
            raise DatabaseReadOnly(f"database is read-only: {self.path}")
        if self._writer_task is None:
            self._writer_task = asyncio.create_task(self._write_loop(), name="sisyphus-writer")
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((events, cursor, future))
        self._wake.set()
        return future

    async def _write_loop(self) -> None:
        """The single writer: drain what is pending into one transaction per batch."""
        pending = self._pending
        while True:
            if not pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            requests: list[_Request] = []
            rows = 0
            while pending and rows < MAX_BATCH_ROWS:
                request = pending.popleft()
                requests.append(request)
                rows += len(request[0])
            await self._commit_batch(requests)

    async def _commit_batch(self, requests: list[_Request]) -> None:
        loop = asyncio.get_running_loop()

        def commit(conn: sqlite3.Connection) -> None:
            offsets = _write_batch(conn, requests)
            # Wake the producers from the connection's thread as soon as the batch is
            # durable: a loop iteration sooner than through this task's own wake-up,
            # and that latency is paid once per batch, between two fsyncs.
            loop.call_soon_threadsafe(self._committed, requests, offsets)

        try:
            if self._writer is None:
                self._writer = await self._open_writer()
            # The whole transaction in one hop to the connection's thread.
            await _in_thread(self._writer, commit)
        except BaseException as exc:
            error: BaseException = exc
            if isinstance(exc, sqlite3.Error):
                error = _translate(exc, self.path)
                if isinstance(error, DatabaseIOError) and self._writer is not None:
                    # After an I/O error the connection's state is unknown: the next
                    # batch opens a fresh one.
                    writer, self._writer = self._writer, None
                    with contextlib.suppress(Exception):
                        await writer.close()
            for _, _, future in requests:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise

    def _committed(self, requests: list[_Request], offsets: list[list[int]]) -> None:
        for (_, _, future), result in zip(requests, offsets, strict=True):
            if not future.done():
                future.set_result(result)
        self._notify_commit()

    # -- reading ---------------------------------------------------------------

    async def read(
        self,
        from_offset: int = 0,
        limit: int = 1000,
        *,
        to: str | None = None,
        types: Sequence[str] | None = None,
        actor: str | None = None,
    ) -> Page:
        where, params = _filters(to=to, types=types, actor=actor)
        sql = COLUMNS + ' WHERE "offset" >= ?' + where + ' ORDER BY "offset" LIMIT ?'
        events = await self._events(sql, [max(int(from_offset), 0), *params,
                                          max(int(limit), 0)])
        next_offset = events[-1].offset + 1 if events else max(int(from_offset), 0)
        return Page(events, next_offset)

    async def _events(self, sql: str, params: Sequence[Any]) -> list[Event]:
        """Run an events query; rows are fetched and decoded in the connection's thread:
        one hop, and the rows never cross to the event loop's CPU undecoded."""
        if self._closed:
            raise DatabaseError(f"store is closed: {self.path}")
        try:
            return await _in_thread(self._reader, _fetch_events, sql, params)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        if self._closed:
            raise DatabaseError(f"store is closed: {self.path}")
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    async def last(
        self,
        *,
        types: Sequence[str] | None = None,
        actor: str | None = None,
        to: str | None = None,
    ) -> Event | None:
        where, params = _filters(to=to, types=types, actor=actor)
        events = await self._events(
            COLUMNS + " WHERE 1" + where + ' ORDER BY "offset" DESC LIMIT 1', params)
        return events[0] if events else None

    async def read_offsets(self, offsets: Sequence[int]) -> list[Event]:
        found: list[Event] = []
        for start in range(0, len(offsets), 500):
            chunk = [int(o) for o in offsets[start : start + 500]]
            sql = (COLUMNS + f' WHERE "offset" IN ({",".join("?" * len(chunk))})'
                   ' ORDER BY "offset"')
            found += await self._events(sql, chunk)
        return found

    async def match_array(
        self,
        from_offset: int = 0,
        *,
        agent: str | None = None,
        types: Sequence[str] | None = None,
        exclude_types: Collection[str] | None = None,
        text: str | None = None,
        before: int | None = None,
    ) -> array[int]:
        sql = 'SELECT "offset" FROM events WHERE "offset" >= ?'
        params: list[Any] = [max(int(from_offset), 0)]
        if before is not None:
            sql += ' AND "offset" < ?'
            params.append(int(before))
        if agent is not None:
            sql += ' AND (actor = ? OR "to" = ?)'
            params += [agent, agent]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params.extend(types)
        if exclude_types:
            sql += f" AND type NOT IN ({','.join('?' * len(exclude_types))})"
            params.extend(exclude_types)
        folding = text is not None and not text.isascii()
        if text and not folding:
            # text_matches's ASCII rule: SQLite's lower() folds ASCII only, and instr()
            # has no LIKE wildcards to escape in the user's text.
            sql += (" AND (instr(lower(type), ?) OR instr(lower(coalesce(actor, '')), ?)"
                    " OR instr(lower(payload), ?))")
            params += [text.lower()] * 3
        elif text:
            # Its rule for any other text: Python's lower(), a call per row (only for a
            # needle that is not ASCII), the payload in its search form.
            sql += (f" AND (instr({_LOWER}(type), ?) OR instr({_LOWER}(coalesce(actor, '')),"
                    f" ?) OR instr({_PAYLOAD_FOLD}(payload), ?))")
            params += [text.lower()] * 3
        if self._closed:
            raise DatabaseError(f"store is closed: {self.path}")
        try:
            return await _in_thread(self._reader, _match, sql + ' ORDER BY "offset"',
                                    params, folding)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    async def head(self) -> int:
        rows = await self._fetch('SELECT max("offset") FROM events', ())
        return int(rows[0][0] or 0)

    async def find_key(self, key: str) -> int | None:
        rows = await self._fetch('SELECT "offset" FROM events WHERE key = ?', (key,))
        return int(rows[0][0]) if rows else None

    async def cursor(self, agent: str) -> int:
        rows = await self._fetch("SELECT position FROM cursors WHERE agent = ?", (agent,))
        return int(rows[0][0]) if rows else 0

    async def cursors(self) -> dict[str, int]:
        rows = await self._fetch("SELECT agent, position FROM cursors ORDER BY agent", ())
        return {str(agent): int(position) for agent, position in rows}

    async def integrity_check(self) -> str:
        """SQLite's own verdict on the file: ``ok`` when it is sound."""
        rows = await self._fetch("PRAGMA integrity_check", ())
        return "\n".join(str(row[0]) for row in rows)

    # -- change detection ------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _watching(self) -> AsyncIterator[None]:
        self._watchers += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="sisyphus-poller")
        try:
            yield
        finally:
            self._watchers -= 1

    async def _poll(self) -> None:
        """Detect commits by other processes: ``PRAGMA data_version`` changes when any
        other connection commits. Runs only while a tail is open."""
        last: int | None = None
        while self._watchers > 0 and not self._closed:
            try:
                rows = await self._reader.execute_fetchall("PRAGMA data_version")
            except (sqlite3.Error, ValueError):
                return
            version = int(next(iter(rows))[0])
            if last is not None and version != last:
                self._notify_commit()
            last = version
            await asyncio.sleep(POLL_INTERVAL_S)

    # -- hosting ---------------------------------------------------------------

    async def host_lease(self) -> HostLease:
        if self.read_only:
            raise DatabaseReadOnly(f"database is read-only: {self.path}")
        return await HostLease.acquire(self.path)

    def current_host(self) -> HostInfo | None:
        return current_host(self.path)

    # -- lifecycle -------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        if self._writer_task is not None:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._writer_task
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
        self._notify_commit()
        if self._writer is not None:
            await self._writer.close()
        await self._reader.close()


def _env_busy_timeout() -> int:
    raw = os.environ.get("SISYPHUS_BUSY_TIMEOUT_MS", "")
    try:
        return max(int(raw), 0) if raw else DEFAULT_BUSY_TIMEOUT_MS
    except ValueError:
        return DEFAULT_BUSY_TIMEOUT_MS


# SQLite keeps these beside the database, under its name.
SIDECARS = ("-wal", "-shm", "-journal")


def _prepare_file(path: Path, create: bool) -> tuple[Path, bool]:
    """Check that ``path`` may hold our log, create it if missing (and allowed); say
    whether it is read-only.

    So that nobody else can make us write our log into their file, or read theirs as
    ours: the path (its last component) must not be a symbolic link, and an existing
    file must be a regular file, owned by us, writable by nobody else; the same goes
    for its -wal, -shm and -journal files if they exist. An existing empty file is made
    the log (mode 0600) only when ``create``; otherwise it is refused as not
    initialised, untouched. Links in the folders above are followed (they are the
    user's to choose). The checks come before SQLite opens the file by name, so in a
    folder others can write a swap in between stays possible: keep the log in a folder
    of your own.
    """
    path = path.expanduser().absolute()
    info = _lstat(path)
    if info is None:
        if not create:
            raise DatabaseMissing(f"database not found: {path}")
        _create_private_file(path)
    else:
        _check_ours(path, info, "database")
        if info.st_size == 0:
            if not create:
                raise DatabaseMissing(
                    f"database is empty (not initialised; run `sisyphus init`): {path}")
            _claim_empty_file(path)
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise DatabaseUnsafe(
                f"database {path} is writable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it")
    for suffix in SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        info = _lstat(sidecar)
        if info is not None:
            _check_ours(sidecar, info, "database file")
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise DatabaseUnsafe(
                    f"database file {sidecar} is writable by other users "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it")
    return path, not _writable(path)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from None


def _check_ours(path: Path, info: os.stat_result, what: str) -> None:
    """Refuse a link, a directory or device, or another user's file."""
    if stat.S_ISLNK(info.st_mode):
        raise DatabaseUnsafe(f"{what} path is a symbolic link: {path}")
    if stat.S_ISDIR(info.st_mode):
        raise NotADatabase(f"not a sisyphus database (a directory): {path}")
    if not stat.S_ISREG(info.st_mode):
        raise NotADatabase(f"not a sisyphus database (not a regular file): {path}")
    if info.st_uid != os.geteuid():
        raise DatabaseUnsafe(f"{what} {path} is owned by uid {info.st_uid}, not you")


def _create_private_file(path: Path) -> None:
    """Create an empty database file with mode 0600 (SQLite gives its -wal and -shm
    files the same mode), and its folder with 0700 if it is new."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except FileExistsError:
        # Another process made it meanwhile: it must pass the same checks.
        info = _lstat(path)
        if info is not None:
            _check_ours(path, info, "database")
    except PermissionError:
        raise DatabaseReadOnly(f"cannot create database (permission denied): {path}") from None
    except OSError as exc:
        raise DatabaseError(f"cannot create database {path}: {exc.strerror}") from None


def _claim_empty_file(path: Path) -> None:
    """Make our existing empty file private (0600) before it becomes the log."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatabaseUnsafe(f"database path is a symbolic link: {path}") from None
        raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            _check_ours(path, info, "database")  # swapped since we looked: refuse
        if info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            os.fchmod(fd, 0o600)  # a file without write bits stays read-only
    except PermissionError:
        raise DatabaseReadOnly(f"database is read-only: {path}") from None
    finally:
        os.close(fd)


def _writable(path: Path) -> bool:
    """Whether we may write the file. A file whose mode has no write bit counts as
    read-only even for root, who would otherwise write through it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


async def _check_and_migrate(conn: aiosqlite.Connection, path: Path, *, read_only: bool,
                             create: bool = True) -> None:
    """Refuse what we must not touch (newer schema, foreign file) before any write;
    then create the schema if the file is new (and ``create``: a reader refuses an
    empty database, untouched)."""
    try:
        version, app_id, tables = await _identify(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema version {version} is newer than this sisyphus supports "
                f"({SCHEMA_VERSION}); upgrade sisyphus: {path}"
            )
        if version == SCHEMA_VERSION and app_id == APPLICATION_ID:
            return
        if version != 0 or app_id not in (0, APPLICATION_ID) or tables:
            raise NotADatabase(f"not a sisyphus database (it holds other data): {path}")
        if not create:
            raise DatabaseMissing(
                f"database is empty (not initialised; run `sisyphus init`): {path}")
        if read_only:
            raise DatabaseReadOnly(
                f"database is read-only and has no sisyphus schema yet: {path}"
            )
        # journal_mode=WAL writes the header, so it comes only after the checks above.
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version, app_id, tables = await _identify(conn)
            if version == 0 and not tables:  # nobody else created it meanwhile
                # One statement at a time: executescript would COMMIT our
                # BEGIN IMMEDIATE first and let another process race us.
                for statement in SCHEMA:
                    await conn.execute(statement)
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise _translate(exc, path) from None


async def _identify(conn: aiosqlite.Connection) -> tuple[int, int, int]:
    (version,) = list(await conn.execute_fetchall("PRAGMA user_version"))[0]
    (app_id,) = list(await conn.execute_fetchall("PRAGMA application_id"))[0]
    (tables,) = list(
        await conn.execute_fetchall("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
    )[0]
    return int(version), int(app_id), int(tables)
