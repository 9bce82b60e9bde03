"""The app's tests run in UTC, with a fixed clock, on a deterministic log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.fixtures import T0, build_log

NOW = T0 + 30


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A database holding the deterministic swarm log."""
    path = tmp_path / "swarm.db"
    build_log(path)
    return path
