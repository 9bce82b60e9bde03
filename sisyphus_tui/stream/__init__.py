"""The durable event stream: ``store = await open_store(path_or_url)``."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

from sisyphus_tui.errors import DatabaseError
from sisyphus_tui.stream.base import Event, EventStore, NewEvent, Page, dumps_event
from sisyphus_tui.stream.sqlite import SQLiteStore

__all__ = ["Event", "EventStore", "NewEvent", "Page", "SQLiteStore", "dumps_event", "open_store"]


async def open_store(
    path_or_url: str | os.PathLike[str],
    *,
    create: bool = True,
    busy_timeout_ms: int | None = None,
) -> EventStore:
    """Open the log at a file path or a ``sqlite:///path`` URL (made if missing,
    unless ``create=False``). Use it as ``async with await open_store(p) as store``."""
    target = os.fspath(path_or_url)
    if "://" in target:
        url = urlparse(target)
        if url.scheme in ("postgres", "postgresql"):
            raise DatabaseError(
                "the PostgreSQL backend is not available in this version; use a SQLite path"
            )
        if url.scheme != "sqlite":
            raise DatabaseError(f"unsupported database URL scheme {url.scheme!r}: {target}")
        target = unquote(url.path)
    return await SQLiteStore.open(target, create=create, busy_timeout_ms=busy_timeout_ms)
