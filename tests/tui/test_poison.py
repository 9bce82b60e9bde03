"""The app on a log holding events no fold can use (an older version's, another
program's, bit rot): it opens, says how many it skipped, and keeps following."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.widgets.event_stream import EventStream
from sisyphus_tui.tui.widgets.panes import LedgerView, StatusLine
from tests.swarm.test_poison import POISON, plant
from tests.tui.conftest import NOW
from tests.tui.test_app import last_offset, settle, until


async def test_the_app_flags_poison_events_and_keeps_following(log: Path) -> None:
    # (Planted from a thread: this test's loop also runs the app.)
    planted = await asyncio.to_thread(plant, log, [p for p in POISON if p[0] != "MESSAGE"])
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await until(pilot, lambda: app.ledger.offset >= planted[-1])
        assert sorted(app.ledger.skipped) == planted
        status = str(app.query_one(StatusLine).render())
        assert f"⚠ {len(planted)} skipped" in status, status
        await until(pilot, lambda: "Skipped events" in app.query_one(LedgerView).source)
        # Still following: an event appended now is folded and shown.
        async with await open_store(log, create=False) as store:
            offset = await store.append("x.after", {"text": "still here"}, actor="tool")
        await until(pilot, lambda: app.head == offset and app.ledger.offset == offset)
        await until(pilot, lambda: last_offset(app.query_one(EventStream)) == offset)
    assert app.return_code in (None, 0)
