"""The demo hosted by the app, attacked: a write lock held past the busy timeout while
it executes. The fault is said in a notification (the app keeps running) and the run
still ends done, every step once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import SisyphusApp
from tests.swarm.conftest import assert_each_step_once
from tests.tui.test_app import until


def hold_write_lock(db: Path, release: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    release.wait(60)
    conn.execute("COMMIT")
    conn.close()


async def test_a_held_lock_is_said_in_the_app_and_the_run_goes_on(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    release = threading.Event()
    async with await open_store(db, busy_timeout_ms=200) as store:
        await prepare_demo(store, workspace)
        app = SisyphusApp(store, workspace=workspace, host=Swarm(store, workspace))
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: app.ledger.phase == "execute", 120)
            holder = threading.Thread(target=hold_write_lock, args=(db, release))
            holder.start()
            try:
                await until(pilot, lambda: any("database is locked" in n.message
                                               for n in app._notifications), 60)
            finally:
                release.set()
                await asyncio.to_thread(holder.join, 60)
            faults = [n for n in app._notifications if "database is locked" in n.message]
            assert faults and all(n.severity == "warning" and not n.markup for n in faults)
            await until(pilot, lambda: app.outcome is not None, 180)
            assert app.outcome is not None and app.outcome.phase == "done"
            assert app.host_fault is None and app.is_running
    assert_each_step_once(db)
