"""Memory-lane: precedents from past runs, searchable, in the run's own database.

The truth is the log: ``MEMORY_STORED`` events (a memory's id is its event's
offset) and ``MEMORY_FEEDBACK`` events. Search runs on a derived index in the same
SQLite file, a fold of those events that can be dropped and rebuilt at any time:

- ``memory_fts``: a contentless FTS5 table (porter stemming over unicode61), one
  row per memory, rowid = memory id;
- ``memory_precedents``: each memory's fields and its feedback counts;
- ``memory_index_state``: the log offset the index has folded up to.

Before every read the index catches up: inside one ``BEGIN IMMEDIATE``
transaction it re-reads its position, applies the MEMORY_* events after it and
records the new position, so several processes can share the file and the index
is always exactly the fold of a prefix of the log.

Ranking (higher is better)::

    relevance = -bm25(title x4, what x1, outcome x1, tags x2)
    d         = helpful - unhelpful
    score     = relevance * (1 + 0.5 * d / (2 + |d|))

The feedback factor is monotonic in ``d`` and stays within (0.5, 1.5), so
feedback reorders comparably relevant precedents but cannot make unrelated text
match (only precedents that match the query are ranked at all).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiosqlite
from pydantic import ValidationError

from sisyphus_tui.errors import DatabaseError, DatabaseLocked, SisyphusError
from sisyphus_tui.events import MemoryFeedback, MemoryStored
from sisyphus_tui.stream.base import Event
from sisyphus_tui.stream.sqlite import DEFAULT_BUSY_TIMEOUT_MS, SQLiteStore

MEMORY_TYPES = ("MEMORY_STORED", "MEMORY_FEEDBACK")
# Bump when the index layout or what is indexed changes: an index built by another
# version is dropped and rebuilt from the log.
INDEX_VERSION = 1
CATCH_UP_PAGE = 500
# bm25 column weights, in the order of memory_fts's columns.
WEIGHTS = {"title": 4.0, "what": 1.0, "outcome": 1.0, "tags": 2.0}
# A query longer than this many distinct words is cut: it bounds the cost of a search.
MAX_QUERY_TERMS = 64

INDEX_TABLES = ("memory_fts", "memory_precedents", "memory_index_state")
INDEX_SCHEMA = (
    # Contentless: the text to search is a normalised copy (see _normalise); the
    # fields as written live in memory_precedents.
    """CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(
        title, what, outcome, tags,
        content='', tokenize='porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TABLE IF NOT EXISTS memory_precedents (
        id        INTEGER PRIMARY KEY,
        title     TEXT NOT NULL,
        what      TEXT NOT NULL,
        outcome   TEXT NOT NULL,
        tags      TEXT NOT NULL,
        run       TEXT,
        helpful   INTEGER NOT NULL DEFAULT 0,
        unhelpful INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS memory_index_state (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        position INTEGER NOT NULL,
        version  INTEGER NOT NULL
    )""",
)

_BM25 = "bm25(memory_fts, {title}, {what}, {outcome}, {tags})".format(**WEIGHTS)
_DIFF = "(p.helpful - p.unhelpful)"
SEARCH_SQL = f"""
    SELECT p.id, p.title, p.what, p.outcome, p.tags, p.run, p.helpful, p.unhelpful,
           -{_BM25} * (1.0 + 0.5 * {_DIFF} / (2.0 + abs({_DIFF}))) AS score
    FROM memory_fts JOIN memory_precedents AS p ON p.id = memory_fts.rowid
    WHERE memory_fts MATCH ?
    ORDER BY score DESC, p.id DESC
    LIMIT ?
"""
GET_SQL = (
    "SELECT id, title, what, outcome, tags, run, helpful, unhelpful, 0.0 "
    "FROM memory_precedents AS p WHERE id = ?"
)

# What unicode61 keeps as token characters (letters and digits; "_" separates).
_WORD = re.compile(r"[^\W_]+")
# British and American spellings fold together before stemming (porter alone stems
# "parameterised" and "parameterized" differently). The same rewrite runs on the
# indexed text and on the query, so it can only merge words that differ by it.
# The stem needs three letters so short words ("raise", "noise", "four") stay.
_SPELLING = (
    (re.compile(r"\b([^\W\d_]{3,}?)is(e|es|ed|ing|ation|ations|er|ers)\b", re.I), r"\1iz\2"),
    (re.compile(r"\b([^\W\d_]{3,}?)ys(e|es|ed|ing|er|ers)\b", re.I), r"\1yz\2"),
    (re.compile(r"\b([^\W\d_]{3,}?)our(s|ed|ing|ite|ites|able)?\b", re.I), r"\1or\2"),
)


class UnknownMemory(SisyphusError):
    """Feedback (or a lookup) names a memory id that is not a MEMORY_STORED event."""


@dataclass(frozen=True, slots=True)
class Precedent:
    """A stored memory as found: its fields, its feedback and its score (higher is better)."""

    id: int
    title: str
    what: str
    outcome: str
    tags: tuple[str, ...]
    run: str | None
    helpful: int
    unhelpful: int
    score: float


def _normalise(text: str) -> str:
    """Lower-case ``text`` and fold British spellings into American ones."""
    text = text.lower()
    for pattern, replacement in _SPELLING:
        text = pattern.sub(replacement, text)
    return text


def fts_query(query: str) -> str | None:
    """Turn free text into a safe FTS5 query: every word quoted, ORed together.

    User text never reaches FTS5 as syntax (no operators, columns, prefixes or
    NEAR); ``None`` when the text has no words.
    """
    words = list(dict.fromkeys(_WORD.findall(_normalise(query))))[:MAX_QUERY_TERMS]
    if not words:
        return None
    # Words hold no quote characters; doubling them anyway keeps this safe if _WORD changes.
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def _precedent(row: Sequence[Any]) -> Precedent:
    id_, title, what, outcome, tags, run, helpful, unhelpful, score = row
    return Precedent(
        id=int(id_),
        title=str(title),
        what=str(what),
        outcome=str(outcome),
        tags=tuple(str(tag) for tag in json.loads(tags)),
        run=None if run is None else str(run),
        helpful=int(helpful),
        unhelpful=int(unhelpful),
        score=float(score),
    )


class MemoryLane:
    """Store, find and rate precedents; open with ``await MemoryLane.open(store)``.

    Closing the lane closes its own index connection, never the store.
    """

    def __init__(self, store: SQLiteStore, conn: aiosqlite.Connection) -> None:
        self.store = store
        self._conn = conn
        # One aiosqlite connection serves every coroutine of this lane: a catch-up
        # transaction and a search must not interleave on it.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, store: SQLiteStore, *, busy_timeout_ms: int | None = None) -> Self:
        """Connect to the store's file (writes nothing until the first read of the index).

        A read-only store gets an in-memory index, rebuilt from the log by this lane.
        """
        timeout = DEFAULT_BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
        target = ":memory:" if store.read_only else store.path.as_uri() + "?mode=rw"
        try:
            conn = await aiosqlite.connect(target, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise _translate(exc, store) from None
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
            # The index is rebuilt from the log if a commit is lost, and its position
            # rolls back with it, so it need not wait for fsync (WAL keeps it consistent).
            await conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            await conn.close()
            raise
        return cls(store, conn)

    # -- writing (to the log) ----------------------------------------------------

    async def memory_store(
        self,
        title: str,
        what: str = "",
        outcome: str = "",
        tags: Sequence[str] = (),
        *,
        run: str | None = None,
        actor: str | None = None,
        key: str | None = None,
    ) -> int:
        """Append a MEMORY_STORED event; returns the memory's id (its offset).

        The same ``key`` twice returns the first id and writes nothing. A single
        string passed as ``tags`` is one tag.
        """
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        # A mapping, not the model: the store validates it and names a bad field
        # in an InvalidPayload, as for every other event.
        payload = {"title": title, "what": what, "outcome": outcome, "tags": tag_list, "run": run}
        return await self.store.append("MEMORY_STORED", payload, actor=actor, key=key)

    async def memory_feedback(
        self,
        memory_id: int,
        helpful: bool,
        *,
        actor: str | None = None,
        key: str | None = None,
    ) -> int:
        """Append a MEMORY_FEEDBACK event for ``memory_id``; returns its offset.

        Raises UnknownMemory (and writes nothing) when ``memory_id`` is not a memory.
        """
        if not await self._is_memory(memory_id):
            raise UnknownMemory(f"unknown memory id {memory_id!r}: no MEMORY_STORED at that offset")
        payload = {"memory_id": memory_id, "helpful": bool(helpful)}
        return await self.store.append("MEMORY_FEEDBACK", payload, actor=actor, key=key)

    async def _is_memory(self, memory_id: int) -> bool:
        # Ask the log, not the index: a memory stored a moment ago by another process
        # is a memory even before any index has folded it.
        if isinstance(memory_id, bool) or not isinstance(memory_id, int) or memory_id < 1:
            return False
        events = (await self.store.read(memory_id, 1)).events
        return bool(events) and events[0].offset == memory_id and events[0].type == "MEMORY_STORED"

    # -- reading (from the index) ------------------------------------------------

    async def memory_find(self, query: str, limit: int = 5) -> list[Precedent]:
        """The precedents matching any word of ``query``, best first (at most ``limit``).

        Any text is accepted: it is searched for as words, never parsed as FTS5
        syntax; text without words finds nothing.
        """
        match = fts_query(query)
        if match is None or limit < 1:
            return []
        rows = await self._caught_up_fetch(SEARCH_SQL, (match, int(limit)))
        return [_precedent(row) for row in rows]

    async def get(self, memory_id: int) -> Precedent | None:
        """One precedent by id, with its feedback counts (score 0.0), or None."""
        rows = await self._caught_up_fetch(GET_SQL, (memory_id,))
        return _precedent(rows[0]) if rows else None

    async def _caught_up_fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Catch the index up, then query it, shielded from the caller's cancellation:
        a caller cancelled mid-way (an actor's context wipe) must not leave the index
        transaction open, holding the database's write lock forever."""

        async def work() -> list[Any]:
            async with self._lock:
                await self._catch_up()
                return await self._fetch(sql, params)

        return await asyncio.shield(asyncio.ensure_future(work()))

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise _translate(exc, self.store) from None

    # -- the index: a fold of the MEMORY_* events ----------------------------------

    async def _catch_up(self) -> None:
        """Fold the MEMORY_* events the index has not seen yet (caller holds the lock)."""
        position = await self._indexed_position()
        if position is not None and position >= await self.store.head():
            return
        conn = self._conn
        try:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                # Decided again under the write lock: another process may have
                # caught up (or dropped the index) since the look above.
                position = await self._prepare_index()
                # Every offset up to this head is committed (offsets are in commit
                # order), so the index may claim it even where no MEMORY_* event is.
                head = await self.store.head()
                last = position
                next_offset = position + 1
                while True:
                    page = await self.store.read(next_offset, CATCH_UP_PAGE, types=MEMORY_TYPES)
                    if page.events:
                        await self._apply(page.events)
                        last = page.events[-1].offset
                    if len(page.events) < CATCH_UP_PAGE:
                        break
                    next_offset = page.next_offset
                await conn.execute(
                    "UPDATE memory_index_state SET position = ? WHERE id = 1",
                    (max(head, last),),
                )
                await conn.execute("COMMIT")
            except BaseException:
                try:
                    await conn.execute("ROLLBACK")
                except (sqlite3.Error, ValueError):
                    pass  # already rolled back by SQLite, or the connection is gone
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, self.store) from None

    async def _indexed_position(self) -> int | None:
        """Where the index stands, or None if it is missing, partial or another version."""
        names = ",".join("?" * len(INDEX_TABLES))
        try:
            rows = list(
                await self._conn.execute_fetchall(
                    "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                    f"AND name IN ({names})), "
                    "(SELECT position FROM memory_index_state WHERE id = 1 AND version = ?)",
                    (*INDEX_TABLES, INDEX_VERSION),
                )
            )
        except sqlite3.OperationalError:
            return None  # memory_index_state is missing
        tables, position = rows[0]
        if tables != len(INDEX_TABLES) or position is None:
            return None
        return int(position)

    async def _prepare_index(self) -> int:
        """Inside the write transaction: the index's position, after (re)building
        an index that is missing, partial or of another version."""
        position = await self._indexed_position()
        if position is not None:
            return position
        for table in INDEX_TABLES:
            await self._conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in INDEX_SCHEMA:
            await self._conn.execute(statement)
        await self._conn.execute(
            "INSERT INTO memory_index_state (id, position, version) VALUES (1, 0, ?)",
            (INDEX_VERSION,),
        )
        return 0

    async def _apply(self, events: Sequence[Event]) -> None:
        """Fold one page of MEMORY_* events, in three statements."""
        precedents: list[tuple[Any, ...]] = []
        searchable: list[tuple[Any, ...]] = []
        votes: list[tuple[int, int, int]] = []
        for event in events:
            try:
                if event.type == "MEMORY_STORED":
                    memory = MemoryStored.model_validate(event.payload)
                    precedents.append((event.offset, memory.title, memory.what,
                                       memory.outcome, json.dumps(memory.tags), memory.run))
                    searchable.append((event.offset, _normalise(memory.title),
                                       _normalise(memory.what), _normalise(memory.outcome),
                                       _normalise(" ".join(memory.tags))))
                elif event.type == "MEMORY_FEEDBACK":
                    feedback = MemoryFeedback.model_validate(event.payload)
                    # Feedback counts only for a memory stored before it: an id that
                    # is not a MEMORY_STORED event matches no row and changes nothing.
                    if feedback.memory_id < event.offset:
                        up = int(feedback.helpful)
                        votes.append((up, 1 - up, feedback.memory_id))
            except ValidationError:
                # Written around the registry (raw SQL): skipped, the same way in
                # every rebuild, rather than blocking every later search.
                continue
        # Memories first: a vote in this page can only name an earlier offset, which
        # is either in the table already or inserted just now.
        if precedents:
            await self._conn.executemany(
                "INSERT INTO memory_precedents (id, title, what, outcome, tags, run) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                precedents,
            )
            await self._conn.executemany(
                "INSERT INTO memory_fts (rowid, title, what, outcome, tags) "
                "VALUES (?, ?, ?, ?, ?)",
                searchable,
            )
        if votes:
            await self._conn.executemany(
                "UPDATE memory_precedents SET helpful = helpful + ?, unhelpful = unhelpful + ? "
                "WHERE id = ?",
                votes,
            )

    # -- lifecycle ---------------------------------------------------------------

    async def close(self) -> None:
        """Close the index connection (the store stays open)."""
        await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _translate(exc: sqlite3.Error, store: SQLiteStore) -> DatabaseError:
    """A one-line error naming the file, for a failure of the memory index."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return DatabaseLocked(f"database is locked by another process: {store.path}")
    return DatabaseError(f"memory index error on {store.path}: {exc}")
