"""Regenerate the SVG screenshots in ``screenshots/``: the real app, hosting a real demo
swarm in a temporary folder, photographed at the moments each picture is about.

Run from the repository: ``uv run python -m sisyphus_tui.tui.screenshots``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import EventStore, open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.widgets.event_stream import EventStream
from sisyphus_tui.tui.widgets.panes import AgentsTable

WIDE = (120, 40)
COMPACT = (80, 24)
# Paced as `sisyphus demo` is, so every moment lasts long enough to be photographed.
SPEED = 0.3
DEADLINE_S = 120.0
SETTLE_S = 0.5  # a few refresh ticks: the panes show what the log holds
LEDGER_SETTLE_S = 1.2  # the ledger pane redraws at most once a second
AGENT = "executor"


class ScreenshotError(SisyphusError):
    """The demo never reached the moment a screenshot is about."""


async def _until(pilot: Pilot[None], ready: Callable[[], bool], what: str) -> None:
    """Let the app run until ``ready()``; fail naming ``what`` after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        if time.monotonic() > deadline:
            raise ScreenshotError(f"the demo never reached {what} in {DEADLINE_S:g}s")
        await pilot.pause(0.1)


async def _resumed_after(store: EventStore, offset: int, agent: str) -> int | None:
    """The offset of ``agent``'s first RESUMED after ``offset``, if there is one yet."""
    page = await store.read(offset + 1, 10_000, types=["RESUMED"])
    return next((e.offset for e in page.events if e.payload.get("agent") == agent), None)


async def _first(store: EventStore, kind: str, ready: Callable[[Any], bool]) -> int | None:
    """The offset of the first event of type ``kind`` that ``ready`` accepts, if any yet."""
    page = await store.read(1, 10_000, types=[kind])
    return next((e.offset for e in page.events if ready(e)), None)


async def _shoot_all(app: SisyphusApp, store: EventStore, out: Path) -> list[Path]:
    shots: list[Path] = []

    def save(name: str) -> None:
        app.save_screenshot(name, str(out))
        shots.append(out / name)

    def select_agent(name: str) -> None:
        table = app.query_one(AgentsTable)
        table.select_row(table.rows.index(name))

    async with app.run_test(size=WIDE, notifications=True) as pilot:
        # The rejection by precedent: the validator's review selected in the stream, its
        # reasons (the precedent) written out under the list.
        rejected: list[int] = []

        async def rejection() -> None:
            while not rejected:
                found = await _first(store, "REVIEW",
                                     lambda e: e.payload.get("verdict") == "needs_changes")
                if found is not None:
                    rejected.append(found)
                    return
                await pilot.pause(0.1)

        await asyncio.wait_for(rejection(), DEADLINE_S)
        await _until(pilot, lambda: app.head >= rejected[0], "the rejection on screen")
        await pilot.pause(SETTLE_S)
        stream = app.query_one(EventStream)
        stream.select_row(stream.row_of(rejected[0]))
        await pilot.pause(LEDGER_SETTLE_S)
        save("rejection.svg")
        stream.jump_to_end()

        # Narrow: one pane at a time (the stream, pane 2), chosen with 1-4.
        await _until(pilot, lambda: app.ledger.phase == "execute"
                     and app.ledger.progress()[0] >= 1, "the first step done")
        await pilot.resize_terminal(*COMPACT)
        # A resize keeps the stream's scroll position: the next event brings the tail in.
        head = app.head
        await _until(pilot, lambda: app.head > head, "an event after the resize")
        await pilot.pause(SETTLE_S)
        save("compact-80x24.svg")
        await pilot.resize_terminal(*WIDE)

        # Mid-refactor: the executor selected (its inbox below), the focus back on the
        # stream.
        await _until(pilot, lambda: app.ledger.progress()[0] >= 2, "two steps done")
        await pilot.press("1")
        await pilot.pause()
        select_agent(AGENT)
        await pilot.press("2")
        await pilot.pause(LEDGER_SETTLE_S)
        save("main.svg")

        await pilot.press("f1")
        await pilot.pause(SETTLE_S)
        save("help.svg")
        await pilot.press("escape")

        # Wipe the executor from the agents pane (asked first: y); photograph once it has
        # resumed, while its row says from which checkpoint.
        await pilot.press("1")
        await pilot.pause()
        select_agent(AGENT)
        before = await store.head()
        await pilot.press("w")
        await pilot.pause()
        await pilot.press("y")
        resumed: list[int] = []

        async def poll() -> None:
            while not resumed:
                found = await _resumed_after(store, before, AGENT)
                if found is not None:
                    resumed.append(found)
                    return
                await pilot.pause(0.1)

        await asyncio.wait_for(poll(), DEADLINE_S)
        await _until(pilot, lambda: app.head >= resumed[0], "the resume on screen")
        def says_resumed() -> bool:
            row = app.query_one(AgentsTable).shown(AGENT)
            return row is not None and row.action.startswith("resumed from checkpoint")

        await _until(pilot, says_resumed, "the executor's row saying it resumed")
        await pilot.pause(SETTLE_S)
        save("wipe-resume.svg")
    return shots


async def _run_demo(folder: Path, out: Path, speed: float) -> list[Path]:
    # Where `sisyphus demo` puts them, relative to where it is run.
    store = await open_store(folder / ".sisyphus" / "swarm.db")
    async with store:
        workspace = folder / "sisyphus-demo"
        await prepare_demo(store, workspace)
        swarm = Swarm(store, workspace, speed=speed)
        app = SisyphusApp(store, workspace=workspace, host=swarm)
        return await _shoot_all(app, store, out)


def regenerate(out: Path, speed: float = SPEED) -> list[Path]:
    """Run the demo inside the app in a temporary folder and save the four screenshots
    into ``out``; returns their paths."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="sisyphus-") as tmp,
          contextlib.chdir(tmp)):
        return asyncio.run(_run_demo(Path(tmp), out, speed))


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the screenshots; prints each file written."""
    parser = argparse.ArgumentParser(
        prog="python -m sisyphus_tui.tui.screenshots",
        description="Regenerate the SVG screenshots of the app running the demo.")
    parser.add_argument("--out", type=Path, default=Path("screenshots"),
                        help="the folder to write into (default: ./screenshots)")
    parser.add_argument("--speed", type=float, default=SPEED, metavar="S",
                        help=f"seconds between the swarm's actions (default {SPEED:g})")
    args = parser.parse_args(argv)
    try:
        shots = regenerate(args.out, args.speed)
    except SisyphusError as exc:
        print(f"screenshots: error: {exc}", file=sys.stderr)
        return 1
    for shot in shots:
        print(shot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
