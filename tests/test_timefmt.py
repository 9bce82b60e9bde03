"""A time stamp no clock can show (another program's, bit rot's) is shown as unknown in
every output, never a crash: the CLI's events, the ledger, the TUI's stream rows and
payload view."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sisyphus_tui.timefmt import UNKNOWN, UNKNOWN_CLOCK, clock, local_time, utc
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.event import EventScreen
from sisyphus_tui.tui.widgets.event_stream import EventStream
from tests.conftest import run_cli
from tests.tui.test_app import until

BAD_STAMPS = (1e20, -1e300, float("inf"), float("nan"))


@pytest.mark.parametrize("ts", BAD_STAMPS)
def test_a_time_no_clock_can_show_is_unknown(ts: float) -> None:
    assert clock(ts) == UNKNOWN_CLOCK and clock(ts, millis=True).startswith(UNKNOWN_CLOCK)
    assert local_time(ts).startswith(UNKNOWN) and utc(ts) == "?"


def test_a_real_time_is_shown() -> None:
    assert utc(0) == "1970-01-01 00:00:00Z"
    assert len(clock(1_700_000_000.5, millis=True)) == len("12:34:56.500")
    assert local_time(1_700_000_000.25)[:4] == "2023"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A log whose second and third events carry time stamps out of any clock's range,
    as another program would write them (the store stamps its own appends now)."""
    db = tmp_path / "swarm.db"
    assert run_cli("emit", "TASK_INIT", "--payload", '{"goal": "g"}', db=db).returncode == 0
    conn = sqlite3.connect(db)
    with conn:
        for type_, actor, payload, ts in (
                ("AGENT_REGISTERED", "executor", '{"agent": "executor", "role": "executor"}',
                 1e20),
                ("x.note", "executor", '{"text": "late"}', -1e300)):
            conn.execute('INSERT INTO events (type, actor, "to", payload, ts) '
                         "VALUES (?, ?, NULL, ?, ?)", (type_, actor, payload, ts))
    conn.close()
    return db


def test_the_cli_and_the_ledger_show_it_as_unknown(log: Path) -> None:
    events = run_cli("events", db=log)
    assert events.returncode == 0, events.stderr
    assert events.stdout.count(UNKNOWN_CLOCK) == 2, events.stdout
    ledger = run_cli("ledger", db=log)
    assert ledger.returncode == 0 and "# Sisyphus ledger" in ledger.stdout, ledger.stderr
    agents = run_cli("agents", db=log)
    assert agents.returncode == 0 and "executor" in agents.stdout, agents.stderr


async def test_the_tui_shows_it_as_unknown(log: Path) -> None:
    async with SisyphusApp(db=log).run_test(size=(120, 40)) as pilot:
        stream = pilot.app.query_one(EventStream)
        await until(pilot, lambda: any(
            UNKNOWN_CLOCK in stream.render_line(y).text for y in range(stream.size.height)))
        await pilot.press("b")  # the registration is bookkeeping: shown, its row drawn
        await until(pilot, lambda: stream.total == 3)
        stream.select_row(1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, EventScreen))
        assert pilot.app.is_running
