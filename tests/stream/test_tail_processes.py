"""tail() sees events committed by another process (latency is measured in benchmarks/)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sisyphus_tui.stream import open_store
from tests.stream.processes import Child


async def test_tail_receives_events_appended_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "tail.db"
    async with await open_store(db) as store:
        await store.append("x.before", {})
        received: list[int] = []

        async def follow() -> None:
            async for event in store.tail(2):
                received.append(event.offset)
                if len(received) == 30:
                    return

        task = asyncio.create_task(follow())
        child = Child("append", str(db), "30", "other")
        returned = await asyncio.to_thread(child.finish)
        await asyncio.wait_for(task, 30)
        assert sorted(received) == sorted(int(x) for x in returned) == list(range(2, 32))
        assert received == sorted(received)


async def test_another_process_tails_events_appended_here(tmp_path: Path) -> None:
    db = tmp_path / "tail.db"
    async with await open_store(db) as store:
        child = Child("tail", str(db), "1", "3")
        assert await asyncio.to_thread(child.first_line.wait, 60)
        offsets = [await store.append("x.here", {"i": i}) for i in range(3)]
        lines = await asyncio.to_thread(child.finish)
        assert lines == ["ready", *map(str, offsets)]
