"""Shared fixtures: real SQLite files in tmp_path, the real CLI in a subprocess."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sisyphus_tui.stream import EventStore, open_store

StoreFactory = Callable[[], Awaitable[EventStore]]

# Every backend runs the same contract suite; PostgreSQL joins this list later.
BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def open_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """A factory that opens (and reopens) one store of the parametrised backend."""
    opened: list[EventStore] = []
    target = tmp_path / "swarm.db"

    async def factory() -> EventStore:
        store = await open_store(target)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_backend: StoreFactory) -> EventStore:
    """One open store of each backend."""
    return await open_backend()


def run_cli(*args: str, db: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the real ``sisyphus`` command (``python -m sisyphus_tui``) in a subprocess."""
    argv = [sys.executable, "-m", "sisyphus_tui", *args]
    if db is not None:
        argv += ["--db", str(db)]
    full_env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=full_env, **kwargs)  # type: ignore[call-overload]


def db_fingerprint(path: Path) -> tuple[str, list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The file's bytes hash and its rows: equal fingerprints mean nothing was written."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        events = conn.execute('SELECT * FROM events ORDER BY "offset"').fetchall()
        cursors = conn.execute("SELECT * FROM cursors ORDER BY agent").fetchall()
    conn.close()
    return digest, events, cursors
