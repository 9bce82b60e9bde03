"""SVG snapshots of the app at 80x24 and 120x40: deterministic (fixed time stamps, a
fixed clock, UTC, a fixed database path), compared with the accepted pictures in
tests/tui/__snapshots__ (``pytest --snapshot-update`` rewrites them after a change)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.tui.app import SisyphusApp
from tests.tui.conftest import NOW
from tests.tui.fixtures import build_log

FIXED = Path("/tmp/sisyphus-snapshots")
Compare = Callable[..., bool]


@pytest.fixture
def fixed_log() -> Iterator[Path]:
    shutil.rmtree(FIXED, ignore_errors=True)
    FIXED.mkdir(parents=True)
    path = FIXED / "swarm.db"
    build_log(path)
    yield path
    shutil.rmtree(FIXED, ignore_errors=True)


async def loaded(pilot: Any) -> None:
    await pilot.pause(0.6)


def test_main_screen_120x40(snap_compare: Compare, fixed_log: Path) -> None:
    app = SisyphusApp(db=fixed_log, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(120, 40), run_before=loaded)


def test_main_screen_80x24(snap_compare: Compare, fixed_log: Path) -> None:
    app = SisyphusApp(db=fixed_log, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded)


def test_agents_pane_80x24(snap_compare: Compare, fixed_log: Path) -> None:
    app = SisyphusApp(db=fixed_log, clock=lambda: NOW)
    assert snap_compare(app, press=["1"], terminal_size=(80, 24), run_before=loaded)


def test_help_screen_120x40(snap_compare: Compare, fixed_log: Path) -> None:
    app = SisyphusApp(db=fixed_log, clock=lambda: NOW)
    assert snap_compare(app, press=["f1"], terminal_size=(120, 40), run_before=loaded)
