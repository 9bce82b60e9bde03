"""An agent's transcript on a big log, against reading the whole transcript, in one run.

Run from the project root::

    uv run python -m benchmarks.transcript            # 1,000,000 events, 200,000 its own
    uv run python -m benchmarks.transcript --quick    # 100,000 events, 20,000 its own

The log: ``--events`` events of four agents (AGENT_OUTPUT text, tool calls, results of
a few hundred lines, messages), a fifth of them the executor's. Measured, in fresh app
runs (``App.run_test(size=(120, 40))``, the transcript view alone): (a) opening the
executor's transcript: the time until its newest block is on screen, the pages read
and the events held; (b) ``g`` (its first block on screen) and ``G`` (back to the
tail); against (c) the peer: what a view that holds the transcript needs before its
first frame, every event of the agent read (``store.read`` pages of 1,000, by actor and
type), measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from benchmarks.stream import environment, load_average, out
from sisyphus_tui.stream import EventStore, open_store
from sisyphus_tui.tui.widgets.transcript import PAGE, TranscriptView

AGENT = "executor"
OTHERS = ("planner", "validator", "researcher")


def build(path: Path, events: int) -> int:
    """A log of ``events`` events, a fifth of them the executor's; its own count."""
    asyncio.run(_create(path))
    conn = sqlite3.connect(path)
    rows, own = [], 0
    result = "\n".join(f"line {n} of the tool's output" for n in range(200))
    for i in range(events):
        agent = AGENT if i % 5 == 0 else OTHERS[i % 3]
        own += agent == AGENT
        kind = ("text", "tool_call", "tool_result", "thinking")[i // 5 % 4]
        payload = {"agent": agent, "message": 1 + i // 1000, "sequence": i, "kind": kind,
                   "text": result if kind == "tool_result" else f"step {i}: working",
                   "data": {"name": "Bash", "input": {"command": f"make {i}"}}
                   if kind == "tool_call" else {}}
        rows.append(("AGENT_OUTPUT", agent, None, json.dumps(payload), 1.8e9 + i))
        if len(rows) == 10_000:
            conn.executemany('INSERT INTO events (type, actor, "to", payload, ts) '
                             "VALUES (?, ?, ?, ?, ?)", rows)
            rows = []
    conn.executemany('INSERT INTO events (type, actor, "to", payload, ts) '
                     "VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return own


async def _create(path: Path) -> None:
    async with await open_store(path):
        pass


class Host(App[None]):
    """The transcript view alone, as its screen shows it."""

    def __init__(self, store: EventStore, head: int) -> None:
        super().__init__()
        self.view = TranscriptView(store, AGENT, head)

    def compose(self) -> ComposeResult:
        yield self.view


async def _until(pilot: Pilot[None], ready: Callable[[], bool]) -> float:
    start = time.perf_counter()
    while not ready():
        await pilot.pause(0.005)
        if time.perf_counter() - start > 120:
            raise TimeoutError("the transcript never showed it")
    return time.perf_counter() - start


async def transcript_run(path: Path, last: int) -> dict[str, float]:
    """One opening of the transcript: the times to the tail, to the first block, and
    back; the pages read."""
    async with await open_store(path, create=False) as store:
        head = await store.head()
        started = time.perf_counter()
        app = Host(store, head)
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.view
            await _until(pilot, lambda: f"step {last}: working" in view.shown_text)
            opened = time.perf_counter() - started
            reads = view.reads
            view.action_jump(0)  # g
            first = await _until(pilot, lambda: "step 0: working" in view.shown_text)
            view.action_jump(-1)  # G
            back = await _until(pilot, lambda: f"step {last}: working" in view.shown_text)
            return {"open": opened, "reads": reads, "first": first, "back": back,
                    "held": len(view.events), "total": view.total}


async def peer_run(path: Path) -> dict[str, float]:
    """The whole transcript read, as a view holding it would before its first frame."""
    async with await open_store(path, create=False) as store:
        started = time.perf_counter()
        count, offset = 0, 0
        while True:
            page = await store.read(offset, 1000, types=["AGENT_OUTPUT"], actor=AGENT)
            if not page.events:
                break
            count += len(page.events)
            offset = page.next_offset
        return {"open": time.perf_counter() - started, "held": count}


def main(argv: Sequence[str] | None = None) -> int:
    """Build the log, time both, print the figures and a markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transcript")
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    events = args.events or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="sisyphus-bench-") as tmp:
        path = Path(tmp) / "swarm.db"
        own = build(path, events)
        last = max(i for i in range(events) if i % 5 == 0 and i // 5 % 4 == 0)
        out(f"# transcript: {events:,} events, {own:,} the executor's ({environment()}; "
            f"load {load_average()})")
        ours, peers = [], []
        for _ in range(args.reps):  # interleaved: the same machine state for both
            ours.append(asyncio.run(transcript_run(path, last)))
            peers.append(asyncio.run(peer_run(path)))
        opened = statistics.median(r["open"] for r in ours)
        peer = statistics.median(r["open"] for r in peers)
        out("| what | median of runs | |")
        out("|---|---|---|")
        out(f"| transcript: its tail on screen | {opened * 1000:.0f} ms | "
            f"{max(r['reads'] for r in ours):.0f} pages of {PAGE} read, "
            f"{max(r['held'] for r in ours):.0f} events held |")
        out(f"| transcript: g, its first block | "
            f"{statistics.median(r['first'] for r in ours) * 1000:.0f} ms | |")
        out(f"| transcript: G, the tail again | "
            f"{statistics.median(r['back'] for r in ours) * 1000:.0f} ms | |")
        out(f"| peer: every event of the agent read | {peer * 1000:.0f} ms | "
            f"{peers[0]['held']:.0f} events held |")
        out(f"| ratio, peer / transcript | {peer / opened:.1f}x | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
