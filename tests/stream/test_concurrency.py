"""Many producers, in one process and in several: offsets unique, gap-free, all present."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sisyphus_tui.stream import EventStore, open_store
from tests.stream.processes import Child


async def test_fifty_coroutines_two_hundred_appends_each(store: EventStore) -> None:
    async def producer(p: int) -> list[tuple[int, int, int]]:
        out = []
        for i in range(200):
            offset = await store.append("x.load", {"p": p, "i": i}, actor=f"p{p}")
            out.append((offset, p, i))
        return out

    results = [row for rows in await asyncio.gather(*(producer(p) for p in range(50)))
               for row in rows]
    offsets = sorted(offset for offset, _, _ in results)
    assert offsets == list(range(1, 10_001))
    assert await store.head() == 10_000

    by_offset = {}
    cursor = 0
    while True:
        page = await store.read(cursor, 1000)
        if not page.events:
            break
        by_offset.update({e.offset: (e.payload["p"], e.payload["i"]) for e in page.events})
        cursor = page.next_offset
    assert all(by_offset[offset] == (p, i) for offset, p, i in results)
    # Each producer's own events are in the order it appended them.
    for p in range(50):
        mine = [i for offset, (q, i) in sorted(by_offset.items()) if q == p]
        assert mine == list(range(200))


async def test_four_processes_appending_at_once(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    async with await open_store(db):  # create the schema once, as a swarm would
        pass
    children = [Child("append", str(db), "500", f"proc{n}") for n in range(4)]
    returned = {f"proc{n}": [int(x) for x in child.finish()] for n, child in enumerate(children)}

    everything = sorted(o for offsets in returned.values() for o in offsets)
    assert everything == list(range(1, 2001)), "offsets must be unique and gap-free"
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute(
            "SELECT \"offset\", json_extract(payload, '$.tag') FROM events").fetchall())
    conn.close()
    for tag, offsets in returned.items():
        assert len(offsets) == 500
        assert all(rows[o] == tag for o in offsets)
