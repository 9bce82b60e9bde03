"""A small app holding one pane as the main screen lays it out (the agents pane 34
cells wide at 120 columns, the whole width at 80), fed by a ledger folded from a real
SQLite log, so a test sets the clock and the hosting state it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.widget import Widget

from sisyphus_tui.cli import _ledger_from_log
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.widgets.panes import AgentsTable

SIZES = [(120, 40), (80, 24)]


async def fold(db: Path) -> tuple[Ledger, int]:
    """The ledger of the log at ``db`` and its head, as the app folds it."""
    async with await open_store(db, create=False) as store:
        ledger: Ledger = await _ledger_from_log(store)  # the fold every CLI command uses
        return ledger, await store.head()


async def append(db: Path, *events: tuple[str, dict[str, Any], str | None, str | None]
                 ) -> list[float]:
    """Append ``(type, payload, actor, to)`` through the store; their time stamps."""
    async with await open_store(db) as store:
        offsets = [await store.append(type_, payload, actor=actor, to=to)
                   for type_, payload, actor, to in events]
        return [event.ts for event in await store.read_offsets(offsets)]


class PaneApp(App[None]):
    """One pane, ``width`` wide (CSS), bordered as in the main screen (unless not)."""

    def __init__(self, pane: Widget, width: str, *, border: bool = True) -> None:
        super().__init__()
        self.pane = pane
        self.width_css = width
        self.border = border
        self.opened: list[str] = []

    def compose(self) -> ComposeResult:
        self.pane.styles.width = self.width_css
        if self.border:
            self.pane.styles.border = ("round", "white")
        yield self.pane

    def on_agents_table_opened(self, message: AgentsTable.Opened) -> None:
        self.opened.append(message.agent)


def pane_width(size: tuple[int, int]) -> str:
    """The agents pane's width in the main screen at ``size``: 34 cells at 120 columns
    (app.tcss), the whole screen on a narrow terminal (one pane at a time)."""
    return "34" if size[0] >= 100 else "1fr"


def lines_of(pane: Widget) -> list[str]:
    """What the pane draws, line by line (its visible height), plain."""
    return [pane.render_line(y).text for y in range(pane.scrollable_content_region.height)]
