"""Memory-lane: precedents as events, found through an index that is a fold of the log."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.errors import InvalidPayload, SisyphusError
from sisyphus_tui.memory import (
    INDEX_TABLES,
    MemoryLane,
    Precedent,
    UnknownMemory,
    fts_query,
)
from sisyphus_tui.stream import SQLiteStore, open_store

LaneFactory = Callable[[], Awaitable[MemoryLane]]

PRECEDENTS = [
    ("Flaky login test fixed by freezing time",
     "The session expiry test failed near midnight; froze the clock with a fixture.",
     "Passed 500 runs in a row.", ["pytest", "flaky"]),
    ("Parameterised the SQL queries in the report module",
     "String formatting built the WHERE clause; switched to bound parameters.",
     "Injection report closed.", ["security", "sqlite"]),
    ("Cache invalidation on deploy",
     "Stale templates after deploys; keyed the cache on the release hash.",
     "No stale pages since.", ["caching"]),
    ("Migrated settings to pydantic",
     "Environment variables were parsed by hand in three places.",
     "Validation errors now name the variable.", ["config"]),
]


async def _open(path: Path) -> SQLiteStore:
    store = await open_store(path)
    assert isinstance(store, SQLiteStore)
    return store


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """One real SQLite log in tmp_path."""
    store = await _open(tmp_path / "swarm.db")
    yield store
    await store.close()


@pytest.fixture
async def open_lane(db: SQLiteStore) -> AsyncIterator[LaneFactory]:
    """Opens memory lanes on the log (each its own connection); closes them all."""
    lanes: list[MemoryLane] = []

    async def factory() -> MemoryLane:
        lane = await MemoryLane.open(db)
        lanes.append(lane)
        return lane

    yield factory
    for lane in lanes:
        await lane.close()


@pytest.fixture
async def lane(open_lane: LaneFactory) -> MemoryLane:
    """A memory lane holding the sample precedents."""
    lane = await open_lane()
    for title, what, outcome, tags in PRECEDENTS:
        await lane.memory_store(title, what, outcome, tags, run="run-1", actor="planner")
    return lane


def _titles(found: list[Precedent]) -> list[str]:
    return [p.title for p in found]


def _raw_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


# -- storing and finding ----------------------------------------------------------


async def test_find_returns_the_relevant_precedent_first(lane: MemoryLane) -> None:
    found = await lane.memory_find("flaky test around midnight")
    assert found[0].title == PRECEDENTS[0][0]
    assert all("Cache" not in t and "pydantic" not in t for t in _titles(found))

    best = found[0]
    assert best.id == 1
    assert (best.what, best.outcome) == (PRECEDENTS[0][1], PRECEDENTS[0][2])
    assert best.tags == ("pytest", "flaky")
    assert best.run == "run-1"
    assert (best.helpful, best.unhelpful) == (0, 0)
    assert best.score > 0
    assert await lane.get(best.id) == Precedent(
        best.id, best.title, best.what, best.outcome, best.tags, "run-1", 0, 0, 0.0
    )


async def test_unrelated_text_finds_nothing(lane: MemoryLane) -> None:
    assert await lane.memory_find("kubernetes helm chart") == []


async def test_tags_and_outcome_text_are_searchable(lane: MemoryLane) -> None:
    assert _titles(await lane.memory_find("caching"))[:1] == ["Cache invalidation on deploy"]
    by_outcome = await lane.memory_find("injection")
    assert _titles(by_outcome) == ["Parameterised the SQL queries in the report module"]
    by_tag = await lane.memory_find("security")
    assert _titles(by_tag) == ["Parameterised the SQL queries in the report module"]


async def test_spelling_variants_and_plurals_match(lane: MemoryLane) -> None:
    expected = "Parameterised the SQL queries in the report module"
    for query in ("parameterized query", "parameterise", "SQL QUERY", "queries"):
        assert _titles(await lane.memory_find(query))[:1] == [expected], query
    # Plurals either way round.
    assert _titles(await lane.memory_find("fixtures"))[:1] == [PRECEDENTS[0][0]]
    assert _titles(await lane.memory_find("deploy"))[:1] == ["Cache invalidation on deploy"]


async def test_title_outweighs_body(open_lane: LaneFactory) -> None:
    lane = await open_lane()
    in_body = await lane.memory_store("Upgraded the linter", what="retry logic was refactored")
    in_title = await lane.memory_store("Retry logic for the HTTP client", what="backoff")
    found = await lane.memory_find("retry")
    assert [p.id for p in found] == [in_title, in_body]


async def test_limit_bounds_the_results(lane: MemoryLane) -> None:
    many = await lane.memory_find("the settings cache test sql", limit=2)
    assert len(many) == 2
    assert await lane.memory_find("cache", limit=0) == []
    assert len(await lane.memory_find("the settings cache test sql", limit=50)) == 4


@pytest.mark.parametrize(
    "query",
    ['"', "-", "NEAR(", "*", "a OR", "'); DROP TABLE events; --", "", "   ", "^", ":",
     "title:cache", "cache*", "NOT cache", "AND", '"unbalanced', "(((", "{title what}: x",
     "NEAR(cache deploy, 2)", "\x00\x1b[2J", "ünïcödé façade", "_" * 10],
)
async def test_hostile_queries_never_raise(lane: MemoryLane, db: SQLiteStore,
                                           query: str) -> None:
    found = await lane.memory_find(query)
    assert all(isinstance(p, Precedent) for p in found)
    assert await db.head() == len(PRECEDENTS)
    assert len(await lane.memory_find("cache")) >= 1  # the index is still there


async def test_operators_are_searched_as_words(lane: MemoryLane) -> None:
    assert await lane.memory_find("") == []
    assert await lane.memory_find("*-\"'();") == []
    # Column filters and prefixes are not syntax: "title:cache" is the words title, cache.
    assert _titles(await lane.memory_find("title:cache"))[:1] == ["Cache invalidation on deploy"]
    assert _titles(await lane.memory_find("NEAR(deploy"))[:1] == ["Cache invalidation on deploy"]
    # "DROP TABLE events" is three words; the log is untouched.
    await lane.memory_find("'); DROP TABLE events; --")
    assert len((await lane.store.read()).events) == len(PRECEDENTS)


def test_fts_query_quotes_every_word() -> None:
    assert fts_query("a OR b") == '"a" OR "or" OR "b"'
    assert fts_query('NEAR("x" y*)') == '"near" OR "x" OR "y"'
    assert fts_query("cache cache CACHE") == '"cache"'
    assert fts_query("parameterised") == '"parameterized"'
    assert fts_query(" - * ( ") is None
    assert fts_query("") is None


async def test_invalid_memory_is_refused_before_the_log(lane: MemoryLane,
                                                        db: SQLiteStore) -> None:
    with pytest.raises(InvalidPayload, match="title"):
        await lane.memory_store("")
    assert await db.head() == len(PRECEDENTS)


async def test_a_single_string_is_one_tag(open_lane: LaneFactory) -> None:
    lane = await open_lane()
    memory = await lane.memory_store("Pinned textual", tags="dependencies")
    found = await lane.get(memory)
    assert found is not None and found.tags == ("dependencies",)


# -- feedback -----------------------------------------------------------------


async def _twins(lane: MemoryLane) -> tuple[int, int]:
    first = await lane.memory_store("Retry the flaky network call", "Wrapped it in backoff.")
    second = await lane.memory_store("Retry the flaky network call", "Wrapped it in backoff.")
    await lane.memory_store("Unrelated: logo colours", "Changed the palette.")
    return first, second


async def test_helpful_feedback_moves_a_precedent_up(open_lane: LaneFactory) -> None:
    lane = await open_lane()
    first, second = await _twins(lane)
    before = await lane.memory_find("flaky network retry")
    assert [p.id for p in before] == [second, first]  # a tie: the newer first
    assert before[0].score == pytest.approx(before[1].score)

    await lane.memory_feedback(first, True, actor="executor")
    after = await lane.memory_find("flaky network retry")
    assert [p.id for p in after] == [first, second]
    assert (after[0].helpful, after[0].unhelpful) == (1, 0)
    assert after[0].score > after[1].score


async def test_unhelpful_feedback_moves_a_precedent_down(open_lane: LaneFactory) -> None:
    lane = await open_lane()
    first, second = await _twins(lane)
    await lane.memory_feedback(second, False)
    after = await lane.memory_find("flaky network retry")
    assert [p.id for p in after] == [first, second]
    assert (after[1].helpful, after[1].unhelpful) == (0, 1)

    # Votes add up: two helpful outweigh one unhelpful.
    await lane.memory_feedback(second, True)
    await lane.memory_feedback(second, True)
    again = await lane.memory_find("flaky network retry")
    assert [p.id for p in again] == [second, first]
    assert (again[0].helpful, again[0].unhelpful) == (2, 1)


async def test_relevance_dominates_feedback(open_lane: LaneFactory) -> None:
    lane = await open_lane()
    for i in range(6):  # background, so "migration" is a rare (informative) word
        await lane.memory_store(f"Routine chore {i}", "Bumped versions.")
    on_topic = await lane.memory_store("Database migration locked the table",
                                       "The migration ran in one transaction.",
                                       tags=["migration"])
    loved = await lane.memory_store("Release notes template", "Wrote the template.",
                                    outcome="The team liked it; not about any migration.")
    for _ in range(20):
        await lane.memory_feedback(loved, True)
    for _ in range(5):
        await lane.memory_feedback(on_topic, False)
    found = await lane.memory_find("migration")
    assert [p.id for p in found] == [on_topic, loved]


async def test_feedback_on_an_unknown_id_errors_and_writes_nothing(lane: MemoryLane,
                                                                   db: SQLiteStore) -> None:
    await lane.memory_feedback(1, True)
    feedback_offset = await db.head()
    head = await db.head()
    fingerprint = _raw_rows(db.path, 'SELECT * FROM events ORDER BY "offset"')
    for bad in (999, 0, -1, feedback_offset):  # beyond the log, nonsense, not a memory
        with pytest.raises(UnknownMemory, match=str(bad)) as caught:
            await lane.memory_feedback(bad, True)
        assert isinstance(caught.value, SisyphusError)
    assert await db.head() == head
    assert _raw_rows(db.path, 'SELECT * FROM events ORDER BY "offset"') == fingerprint
    assert await lane.get(999) is None
    assert await lane.get(feedback_offset) is None


async def test_feedback_from_outside_is_folded_only_for_real_memories(
    lane: MemoryLane, db: SQLiteStore
) -> None:
    # An external tool may append feedback for anything; only votes on an earlier
    # MEMORY_STORED count.
    await db.append("MEMORY_FEEDBACK", {"memory_id": 3, "helpful": True})
    not_yet = await db.head() + 1
    # A vote for the memory that will be stored two events later, and a vote for a vote.
    await db.append("MEMORY_FEEDBACK", {"memory_id": not_yet + 2, "helpful": True})
    await db.append("MEMORY_FEEDBACK", {"memory_id": not_yet, "helpful": True})
    later = await db.append("MEMORY_STORED", {"title": "Stored after votes for it"})
    assert later == not_yet + 2
    vote_target = await lane.get(3)
    assert vote_target is not None and vote_target.helpful == 1
    stored_late = await lane.get(later)
    assert stored_late is not None and (stored_late.helpful, stored_late.unhelpful) == (0, 0)


# -- idempotency --------------------------------------------------------------


async def test_the_same_key_stores_once(open_lane: LaneFactory, db: SQLiteStore) -> None:
    lane = await open_lane()
    first = await lane.memory_store("Vendored the parser", key="memo:parser")
    again = await lane.memory_store("Vendored the parser (retry)", key="memo:parser")
    assert again == first
    vote = await lane.memory_feedback(first, True, key="vote:parser")
    assert await lane.memory_feedback(first, True, key="vote:parser") == vote
    assert await db.head() == 2
    found = await lane.memory_find("parser")
    assert [(p.id, p.title, p.helpful) for p in found] == [(first, "Vendored the parser", 1)]


# -- the index is a projection of the log ---------------------------------------


async def test_a_lane_opened_later_sees_earlier_memories(tmp_path: Path) -> None:
    path = tmp_path / "swarm.db"
    async with await _open(path) as store, await MemoryLane.open(store) as lane:
        memory = await lane.memory_store("Sharded the test suite", tags=["ci"])
        await lane.memory_feedback(memory, True)
    async with await _open(path) as store, await MemoryLane.open(store) as lane:
        found = await lane.memory_find("ci shard")
        assert [(p.id, p.helpful) for p in found] == [(memory, 1)]


async def test_concurrent_lanes_fold_each_event_once(db: SQLiteStore,
                                                     open_lane: LaneFactory) -> None:
    writer = await open_lane()
    ids = await db.append_many(  # more than a catch-up page
        {"type": "MEMORY_STORED", "payload": {"title": f"Precedent number {i}", "tags": ["bulk"]}}
        for i in range(1200)
    )
    lanes = [await open_lane() for _ in range(4)]
    results = await asyncio.gather(*(lane.memory_find("bulk", limit=2000) for lane in lanes),
                                   *(writer.memory_find("bulk", limit=2000) for _ in range(3)))
    for found in results:
        assert sorted(p.id for p in found) == ids
    assert _raw_rows(db.path, "SELECT count(*) FROM memory_precedents") == [(1200,)]


async def test_memories_appended_directly_are_found(lane: MemoryLane, db: SQLiteStore) -> None:
    await lane.memory_find("warm the index up first")
    offset = await db.append("MEMORY_STORED", {
        "title": "Vacuumed the database nightly", "outcome": "File shrank by half",
        "tags": ["sqlite", "maintenance"], "run": "cron",
    }, actor="external-tool")
    found = await lane.memory_find("vacuum maintenance")
    assert [(p.id, p.run) for p in found][:1] == [(offset, "cron")]


async def test_malformed_raw_rows_are_skipped(lane: MemoryLane, db: SQLiteStore) -> None:
    # Written around the registry with raw SQL: not a valid MEMORY_STORED.
    with sqlite3.connect(db.path) as conn:
        conn.execute("INSERT INTO events (type, payload, ts) VALUES "
                     "('MEMORY_STORED', '{\"what\": \"no title\"}', 0)")
    conn.close()
    after = await db.append("MEMORY_STORED", {"title": "Valid after the bad one"})
    assert _titles(await lane.memory_find("bad")) == ["Valid after the bad one"]
    assert await lane.get(after - 1) is None


async def test_dropping_the_index_rebuilds_identical_results(tmp_path: Path) -> None:
    path = tmp_path / "swarm.db"
    queries = ["flaky test", "sql parameters", "cache deploy", "settings pydantic", "the"]
    async with await _open(path) as store, await MemoryLane.open(store) as lane:
        for title, what, outcome, tags in PRECEDENTS:
            memory = await lane.memory_store(title, what, outcome, tags)
            await lane.memory_feedback(memory, len(title) % 2 == 0)
        before = [await lane.memory_find(q, limit=10) for q in queries]

        # Dropped under an open lane: its next search rebuilds.
        with sqlite3.connect(path) as conn:
            for table in INDEX_TABLES:
                conn.execute(f"DROP TABLE {table}")
        conn.close()
        assert [await lane.memory_find(q, limit=10) for q in queries] == before

    # Dropped while nothing is open, and only in part: reopening rebuilds it all.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE memory_fts")
    conn.close()
    async with await _open(path) as store, await MemoryLane.open(store) as lane:
        assert [await lane.memory_find(q, limit=10) for q in queries] == before
    tables = {row[0] for row in _raw_rows(path, "SELECT name FROM sqlite_master")}
    assert set(INDEX_TABLES) <= tables


async def test_an_index_of_another_version_is_rebuilt(lane: MemoryLane, db: SQLiteStore) -> None:
    before = await lane.memory_find("cache")
    with sqlite3.connect(db.path) as conn:
        conn.execute("UPDATE memory_index_state SET version = 999, position = 0")
        conn.execute("DELETE FROM memory_precedents")
    conn.close()
    assert await lane.memory_find("cache") == before


async def test_a_read_only_log_is_searched_from_an_in_memory_index(tmp_path: Path) -> None:
    path = tmp_path / "swarm.db"
    async with await _open(path) as store, await MemoryLane.open(store) as lane:
        await lane.memory_store("Read-only audit trail", tags=["audit"])
    os.chmod(path, 0o444)
    try:
        async with await _open(path) as store, await MemoryLane.open(store) as lane:
            assert store.read_only
            assert _titles(await lane.memory_find("audit")) == ["Read-only audit trail"]
    finally:
        os.chmod(path, 0o644)
    tables = {row[0] for row in _raw_rows(path, "SELECT name FROM sqlite_master")}
    assert not set(INDEX_TABLES) & tables


# -- across processes -----------------------------------------------------------

CHILD = """
import asyncio, json, sys
from sisyphus_tui.memory import MemoryLane
from sisyphus_tui.stream import open_store

async def main(path, action, text):
    async with await open_store(path) as store, await MemoryLane.open(store) as lane:
        if action == "store":
            print(json.dumps(await lane.memory_store(text, tags=["child"])))
        else:
            found = await lane.memory_find(text, limit=100)
            print(json.dumps([[p.id, p.title, p.helpful] for p in found]))

asyncio.run(main(*sys.argv[1:]))
"""


async def _child(path: Path, action: str, text: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), action, text,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_memories_cross_processes(lane: MemoryLane) -> None:
    path = lane.store.path
    await lane.memory_feedback(2, True)
    # Another process finds what this one stored (its index catches up first).
    found = await _child(path, "find", "parameterized sql")
    assert found == [[2, PRECEDENTS[1][0], 1]]
    # This process finds what another one stored, with an index already up to date.
    child_id = await _child(path, "store", "Child process precedent")
    assert _titles(await lane.memory_find("child")) == ["Child process precedent"]
    assert await lane.get(child_id) is not None


async def test_processes_catching_up_at_once_fold_each_event_once(
    lane: MemoryLane, db: SQLiteStore
) -> None:
    await db.append_many(
        {"type": "MEMORY_STORED", "payload": {"title": f"Shared precedent {i}"}} for i in range(300)
    )
    results = await asyncio.gather(*(_child(db.path, "find", "shared") for _ in range(4)))
    assert all(len(found) == 100 for found in results)
    assert results.count(results[0]) == len(results)
    assert _raw_rows(db.path, "SELECT count(*) FROM memory_precedents") == [
        (len(PRECEDENTS) + 300,)
    ]
