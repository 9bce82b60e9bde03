"""A child process for the multi-process tests: ``python worker.py MODE DB ...``.

Modes:
  append DB N TAG      N appends from 10 coroutines; prints each returned offset.
  crashloop DB         forever: append a job to ``worker``, then handle every pending
                       job in a tracking transaction (3 results + cursor advance);
                       prints ``job OFFSET`` and ``done OFFSET`` as each returns.
  tail DB FROM N       prints the offsets of the first N events tailed from FROM.
"""

from __future__ import annotations

import asyncio
import sys

from sisyphus_tui.stream import open_store


async def append(db: str, count: int, tag: str) -> None:
    async with await open_store(db) as store:
        queue = list(range(count))

        async def producer() -> None:
            while queue:
                i = queue.pop()
                offset = await store.append("x.load", {"tag": tag, "i": i})
                print(offset, flush=True)

        await asyncio.gather(*(producer() for _ in range(10)))


async def crashloop(db: str) -> None:
    async with await open_store(db) as store:
        n = 0
        while True:
            n += 1
            job = await store.append("x.job", {"n": n}, to="worker")
            print(f"job {job}", flush=True)
            cursor = await store.cursor("worker")
            page = await store.read(cursor + 1, 100, to="worker")
            for event in page.events:
                await store.append_many(
                    [
                        {"type": "x.result", "payload": {"job": event.offset, "part": part}}
                        for part in range(3)
                    ],
                    cursor=("worker", event.offset),
                )
                print(f"done {event.offset}", flush=True)


async def tail(db: str, start: int, count: int) -> None:
    async with await open_store(db) as store:
        print("ready", flush=True)
        seen = 0
        async for event in store.tail(start):
            print(event.offset, flush=True)
            seen += 1
            if seen == count:
                return


def main() -> None:
    mode, db, *rest = sys.argv[1:]
    if mode == "append":
        asyncio.run(append(db, int(rest[0]), rest[1]))
    elif mode == "crashloop":
        asyncio.run(crashloop(db))
    elif mode == "tail":
        asyncio.run(tail(db, int(rest[0]), int(rest[1])))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
