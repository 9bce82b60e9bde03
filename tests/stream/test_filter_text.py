"""One text search everywhere: the store's ``match_offsets`` and the live filter
(``Filter.matches`` on events as they arrive) find the same events, non-ASCII text
included (``CAFÉ`` finds ``café``), in registered and ``x.`` types, and in payloads an
older version or another writer stored with ``\\u`` escapes."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from sisyphus_tui.narrative import BOOKKEEPING
from sisyphus_tui.stream import EventStore, open_store
from sisyphus_tui.stream.base import search_form, text_matches
from sisyphus_tui.tui.widgets.event_stream import Filter

NEEDLES = ("café", "CAFÉ", "Café", "CAF", "caf", "ÉCLAIR", "éclair")


async def fill(store: EventStore) -> dict[str, int]:
    """Events with accented text in registered and x. types; offsets by name."""
    at = {}
    at["status"] = await store.append("STATUS_UPDATE", {"agent": "executor", "state":
                                      "working", "detail": "at the café"}, actor="executor")
    at["note"] = await store.append("x.note", {"text": "Le CAFÉ est fermé"}, actor="tool")
    at["message"] = await store.append("MESSAGE", {"text": "one café, one éclair"},
                                       actor="human", to="executor")
    at["nested"] = await store.append("x.note", {"items": [{"name": "Éclair"}]},
                                      actor="tool")
    at["plain"] = await store.append("x.note", {"text": "coffee, no accent: cafe"},
                                     actor="tool")
    at["checkpoint"] = await store.append("CHECKPOINT", {"agent": "executor", "cursor": 3},
                                          actor="executor")
    return at


def append_escaped(db: Path, payload: dict[str, object]) -> None:
    """Write a row as an older version (or another writer) did: ASCII-escaped JSON."""
    conn = sqlite3.connect(db)
    conn.execute('INSERT INTO events (type, actor, "to", payload, ts, key) VALUES '
                 "(?, ?, NULL, ?, ?, NULL)",
                 ("x.legacy", "old", json.dumps(payload), time.time()))
    conn.commit()
    conn.close()


async def test_the_store_and_the_live_filter_find_the_same_events(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    async with await open_store(db) as store:
        at = await fill(store)
    append_escaped(db, {"text": "CAFÉ crème"})
    raw = sqlite3.connect(db).execute(
        "SELECT payload FROM events WHERE type = 'x.legacy'").fetchone()[0]
    assert "\\u00c9" in raw, "the legacy row is stored escaped"
    async with await open_store(db) as store:
        events = (await store.read(1, 100)).events
        legacy = events[-1].offset
        found = {needle: await store.match_offsets(text=needle) for needle in NEEDLES}
        for needle in NEEDLES:
            live = [e.offset for e in events if Filter(text=needle).matches(e)]
            assert live == found[needle], needle
            assert list(await store.match_array(text=needle)) == found[needle]
    cafe = [at["status"], at["note"], at["message"], legacy]
    assert found["café"] == found["CAFÉ"] == found["Café"] == cafe
    # ASCII text folds ASCII case only: "CAF" is in "café" and "cafe" alike.
    assert found["CAF"] == found["caf"] == [*cafe[:3], at["plain"], legacy]
    assert found["ÉCLAIR"] == found["éclair"] == [at["message"], at["nested"]]


async def test_exclusions_and_bounds_combine_with_the_other_filters(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "swarm.db") as store:
        at = await fill(store)
        hidden = sorted(BOOKKEEPING)
        assert await store.match_offsets(exclude_types=hidden) == [
            at["note"], at["message"], at["nested"], at["plain"]]
        assert await store.match_offsets(agent="executor", exclude_types=hidden) == [
            at["message"]]
        assert await store.match_offsets(text="café", exclude_types=hidden) == [
            at["note"], at["message"]]
        assert await store.match_offsets(before=at["message"]) == [at["status"], at["note"]]
        assert await store.match_offsets(at["note"], before=at["plain"],
                                         exclude_types=hidden) == [
            at["note"], at["message"], at["nested"]]
        events = (await store.read(1, 100)).events
        shown = Filter(exclude=BOOKKEEPING)
        assert [e.offset for e in events if shown.matches(e)] == \
            await store.match_offsets(exclude_types=hidden)


@pytest.mark.parametrize(("needle", "haystack", "found"), [
    ("café", "CAFÉ", True), ("CAFÉ", "un café", True), ("cafe", "café", False),
    ("ABC", "xabcx", True), ("abc", "XABCX", True), ("é", "E", False),
    # An ASCII needle folds ASCII only, as SQLite's lower(): the Kelvin sign stays.
    ("k", "\u212a", False),
])
def test_text_matches(needle: str, haystack: str, found: bool) -> None:
    assert text_matches(needle, haystack) is found


def test_the_search_form_keeps_non_ascii_text_as_itself() -> None:
    assert search_form({"text": "café", "n": 1}) == '{"text":"café","n":1}'

