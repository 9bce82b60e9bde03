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


async def _first(pilot: Pilot[None], store: EventStore, kind: str,
                 accept: Callable[[Any], bool], after: int = 0) -> int:
    """The offset of the first event of type ``kind`` after ``after`` that ``accept``
    takes, once the log has one (the app runs meanwhile); fails after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        page = await store.read(after + 1, 10_000, types=[kind])
        found = next((e.offset for e in page.events if accept(e)), None)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise ScreenshotError(f"the demo never wrote that {kind} in {DEADLINE_S:g}s")
        await pilot.pause(0.1)


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
        rejected = await _first(pilot, store, "REVIEW",
                                lambda e: e.payload.get("verdict") == "needs_changes")
        await _until(pilot, lambda: app.head >= rejected, "the rejection on screen")
        await pilot.pause(SETTLE_S)
        stream = app.query_one(EventStream)
        stream.select_row(stream.row_of(rejected))
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
        resumed = await _first(pilot, store, "RESUMED",
                               lambda e: e.payload.get("agent") == AGENT, after=before)
        await _until(pilot, lambda: app.head >= resumed, "the resume on screen")

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
