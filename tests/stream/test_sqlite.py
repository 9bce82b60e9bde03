"""What only the SQLite backend has to prove: file modes, refusals that leave the file
untouched, read-only and locked databases, append-only enforced by the database."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from sisyphus_tui.errors import (
    DatabaseError,
    DatabaseLocked,
    DatabaseMissing,
    DatabaseReadOnly,
    NotADatabase,
    SchemaTooNew,
)
from sisyphus_tui.stream import open_store
from tests.conftest import db_fingerprint


async def make_db(path: Path, events: int = 3) -> None:
    async with await open_store(path) as store:
        for i in range(events):
            await store.append("x.n", {"i": i}, to="a")
        await store.append_many([], cursor=("a", 1))


async def test_database_and_wal_are_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "swarm.db"
    async with await open_store(db) as store:
        await store.append("x.n", {})
        wal = db.with_name("swarm.db-wal")
        assert wal.exists()
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        assert await store.integrity_check() == "ok"


async def test_the_database_refuses_update_and_delete(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await make_db(db)
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET type = 'x.forged'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


async def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await make_db(db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = db_fingerprint(db)
    with pytest.raises(SchemaTooNew, match="version 99 is newer"):
        await open_store(db)
    assert db_fingerprint(db) == before


async def test_a_newer_schema_in_rollback_mode_is_not_switched_to_wal(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE events (x)")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(SchemaTooNew):
        await open_store(db)
    assert db.read_bytes() == before, "the header (journal mode) must not be rewritten"


async def test_foreign_and_damaged_files_are_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    text = tmp_path / "notes.db"
    text.write_text("these are my notes, not a database\n" * 100)
    for path in (foreign, text):
        before = path.read_bytes()
        with pytest.raises(NotADatabase, match="not a sisyphus database"):
            await open_store(path)
        assert path.read_bytes() == before
    with pytest.raises(NotADatabase, match="directory"):
        await open_store(tmp_path)


async def test_a_missing_database_is_not_created_when_asked_not_to(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "swarm.db"
    with pytest.raises(DatabaseMissing, match="database not found"):
        await open_store(db, create=False)
    assert not db.parent.exists()


async def test_a_read_only_database_reads_but_refuses_appends(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await make_db(db)
    db.chmod(0o444)
    before = db_fingerprint(db)
    async with await open_store(db) as store:
        assert [e.payload["i"] for e in (await store.read()).events] == [0, 1, 2]
        assert await store.cursor("a") == 1
        with pytest.raises(DatabaseReadOnly, match="read-only"):
            await store.append("x.n", {})
    assert db_fingerprint(db) == before


async def test_a_locked_database_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await make_db(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        async with await open_store(db, busy_timeout_ms=100) as store:
            assert await store.head() == 3  # WAL: readers are never blocked
            with pytest.raises(DatabaseLocked, match="locked"):
                await store.append("x.n", {"i": 3})
            holder.execute("ROLLBACK")
            assert await store.append("x.n", {"i": 3}) == 4  # the writer recovers
    finally:
        holder.close()


async def test_urls(tmp_path: Path) -> None:
    db = tmp_path / "url.db"
    async with await open_store(f"sqlite://{db}") as store:
        assert await store.append("x.n", {}) == 1
    with pytest.raises(DatabaseError, match="PostgreSQL backend is not available"):
        await open_store("postgresql://localhost/swarm")
    with pytest.raises(DatabaseError, match="unsupported database URL scheme 'redis'"):
        await open_store("redis://localhost")
