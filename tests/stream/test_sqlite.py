"""What only the SQLite backend has to prove: file modes, refusals that leave the file
untouched, read-only and locked databases, append-only enforced by the database."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from sisyphus_tui.errors import (
    DatabaseError,
    DatabaseLocked,
    DatabaseMissing,
    DatabaseReadOnly,
    DatabaseUnsafe,
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


# -- whose file: links, owners, modes, empty files ------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


async def test_a_database_path_that_is_a_link_is_refused_and_not_followed(
    tmp_path: Path,
) -> None:
    theirs = tmp_path / "their-home" / "collected.db"
    theirs.parent.mkdir()
    theirs.touch(mode=0o666)
    mine = tmp_path / "mine.db"
    mine.touch()
    dangling = tmp_path / "nowhere.db"
    for target in (theirs, mine, dangling):
        link = tmp_path / "shared" / "swarm.db"
        link.parent.mkdir(exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        for create in (True, False):
            with pytest.raises(DatabaseUnsafe, match="database path is a symbolic link: "):
                await open_store(link, create=create)
        assert link.is_symlink() and os.readlink(link) == str(target)
    assert theirs.read_bytes() == b"" and mine.read_bytes() == b""
    assert not dangling.exists()
    assert os.listdir(tmp_path / "shared") == ["swarm.db"]


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
async def test_a_sidecar_that_is_a_link_is_refused(tmp_path: Path, suffix: str) -> None:
    db = tmp_path / "swarm.db"
    await make_db(db)
    before = db.read_bytes()
    stolen = tmp_path / "stolen"
    sidecar = db.with_name("swarm.db" + suffix)
    sidecar.symlink_to(stolen)
    for create in (True, False):
        with pytest.raises(DatabaseUnsafe, match=f"database file path is a symbolic link: "
                                                 f"{sidecar}"):
            await open_store(db, create=create)
    assert not stolen.exists()
    sidecar.unlink()
    assert db.read_bytes() == before
    # Not even a new database is created beside a planted link.
    fresh = tmp_path / "fresh.db"
    fresh.with_name("fresh.db-wal").symlink_to(stolen)
    with pytest.raises(DatabaseUnsafe, match="symbolic link"):
        await open_store(fresh)
    assert not stolen.exists()


@needs_root
async def test_another_users_database_is_refused_untouched(tmp_path: Path) -> None:
    planted = tmp_path / "collected.db"
    planted.touch()
    planted.chmod(0o666)
    os.chown(planted, 65534, 65534)
    for create in (True, False):
        with pytest.raises(DatabaseUnsafe, match=f"database {planted} is owned by uid 65534, "
                                                 "not you"):
            await open_store(planted, create=create)
    assert planted.read_bytes() == b""
    assert stat.S_IMODE(planted.stat().st_mode) == 0o666
    # A full log of theirs is refused too (they could have written its tasks).
    db = tmp_path / "swarm.db"
    await make_db(db)
    os.chown(db, 65534, 65534)
    before = db_fingerprint(db)
    with pytest.raises(DatabaseUnsafe, match="owned by uid 65534"):
        await open_store(db, create=False)
    assert db_fingerprint(db) == before


@needs_root
async def test_another_users_sidecar_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await make_db(db)
    wal = db.with_name("swarm.db-wal")
    wal.touch(mode=0o666)
    os.chown(wal, 65534, 65534)
    with pytest.raises(DatabaseUnsafe, match=f"database file {wal} is owned by uid 65534"):
        await open_store(db)
    assert wal.stat().st_size == 0 and wal.stat().st_uid == 65534


async def test_a_database_others_can_write_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await make_db(db)
    db.chmod(0o664)
    before = db_fingerprint(db)
    with pytest.raises(DatabaseUnsafe, match=r"writable by other users \(mode 0664\)"):
        await open_store(db, create=False)
    assert db_fingerprint(db) == before
    assert stat.S_IMODE(db.stat().st_mode) == 0o664


async def test_our_empty_file_becomes_a_private_log(tmp_path: Path) -> None:
    for mode in (0o644, 0o666):
        db = tmp_path / f"empty-{mode:o}.db"
        db.touch()
        db.chmod(mode)
        async with await open_store(db) as store:
            assert await store.append("x.n", {}) == 1
        assert stat.S_IMODE(db.stat().st_mode) == 0o600


async def test_a_reader_never_writes_the_schema_into_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    empty.chmod(0o644)
    with pytest.raises(DatabaseMissing, match=f"database is empty \\(not initialised; run "
                                              f"`sisyphus init`\\): {empty}"):
        await open_store(empty, create=False)
    assert empty.read_bytes() == b""
    assert stat.S_IMODE(empty.stat().st_mode) == 0o644
    # A SQLite file without tables (only a header) is empty too.
    header_only = tmp_path / "header.db"
    conn = sqlite3.connect(header_only)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    header_only.chmod(0o600)
    before = header_only.read_bytes()
    with pytest.raises(DatabaseMissing, match="database is empty"):
        await open_store(header_only, create=False)
    assert header_only.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["empty.db", "header.db"]
