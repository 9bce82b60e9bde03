"""The event stream pane: a virtual scroll view over the log, one story line per event.

Its height is the number of events it shows; only the visible rows are rendered, from
events read from the store in pages (an LRU of a few thousand events, by offset), so a
log of a million events opens as fast and in as little memory as an empty one, and
scrolls back to offset 1. Showing everything, row ``r`` is offset ``r + 1`` (offsets are
gap-free); otherwise (bookkeeping hidden, the default, or the user's filter) the offsets
shown are kept as a compact array, found from the tail backwards: the last rows are on
screen at once, the older ones join above them while the scan goes on.

A row is the headless output's line: offset, time, actor and ``narrative.summary``,
coloured by its type; the selected row is written out whole below the list (its type,
actor → recipient, the summary wrapped), and ``enter`` opens its payload.
"""

from __future__ import annotations

import asyncio
from array import array
from dataclasses import dataclass, replace
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import Worker

from sisyphus_tui.narrative import BOOKKEEPING, summary
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event, EventStore, search_form, text_matches
from sisyphus_tui.timefmt import clock

PAGE = 100
CACHED_EVENTS = 4000  # ~ 40 screens of rows
# The scan for the offsets shown starts with the newest FIRST_SCAN offsets (the first
# frame waits for it) and doubles up to MAX_SCAN per read, so a read never holds the
# store's reader for long while the user scrolls.
FIRST_SCAN = 2048
MAX_SCAN = 65536
ACTOR_MIN, ACTOR_MAX = 5, 14  # the actor column: as wide as the widest name seen
DETAIL_TEXT_LINES = 3  # the selected event's summary, wrapped, under its header line
DETAIL_MIN_HEIGHT = 12  # a shorter pane has no room for the detail area
# Narrower than this, rows leave the time out (the detail area has it): the summary's
# first words (a review's verdict) matter more than the clock. (The width beside the
# scrollbar: 54 in the 58-cell pane of a 120-column terminal, which shows the time.)
TIME_MIN_WIDTH = 52
TYPE_STYLES = {
    "PHASE": "bold magenta", "TASK_INIT": "bold magenta", "PLAN_INIT": "cyan",
    "PLAN_STEP": "cyan", "REVIEW": "bold cyan", "FILE_EDIT": "yellow", "TEST_FAIL": "bold red",
    "TEST_PASS": "bold green", "GATE_RESULT": "bold blue", "MESSAGE": "",
    "AGENT_FAILED": "bold red", "AGENT_STALE": "red", "CONTEXT_WIPED": "bold red",
    "RESUMED": "bold green", "RUN_RESUMED": "bold green", "CONTROL": "bold",
    "CHECKPOINT": "dim", "STATUS_UPDATE": "dim", "AGENT_REGISTERED": "dim",
    "AGENT_OUTPUT": "italic",
}


@dataclass(frozen=True)
class Filter:
    """What the stream shows: ``agent:NAME type:TYPE`` and free text (what the user
    typed), and the types it leaves out (bookkeeping, unless asked for)."""

    agent: str | None = None
    types: tuple[str, ...] = ()
    text: str | None = None
    exclude: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, query: str) -> Filter:
        """``agent:executor type:FILE_EDIT words`` (each part optional)."""
        agent, types, words = None, [], []
        for part in query.split():
            key, sep, value = part.partition(":")
            if sep and key == "agent" and value:
                agent = value
            elif sep and key == "type" and value:
                types.append(value)
            else:
                words.append(part)
        return cls(agent, tuple(types), " ".join(words) or None)

    @property
    def empty(self) -> bool:
        """Whether it shows everything."""
        return (self.agent is None and not self.types and self.text is None
                and not self.exclude)

    def store_args(self) -> dict[str, Any]:
        """The store's ``match_offsets`` arguments for this filter."""
        return {"agent": self.agent, "types": list(self.types) or None,
                "exclude_types": sorted(self.exclude) or None, "text": self.text}

    def matches(self, event: Event) -> bool:
        """The same test the store's ``match_offsets`` applies, for new events (the
        text as ``text_matches`` finds it, in the payload's ``search_form``)."""
        if self.agent is not None and self.agent not in (event.actor, event.to):
            return False
        if self.types and event.type not in self.types:
            return False
        if event.type in self.exclude:
            return False
        return self.text is None or text_matches(
            self.text, event.type, event.actor or "", search_form(event.payload))

    def describe(self) -> str:
        """The filter as the user typed it (the types left out are not the user's)."""
        parts = ([f"agent:{self.agent}"] if self.agent else []) + [
            f"type:{t}" for t in self.types] + ([self.text] if self.text else [])
        return " ".join(parts)


class Offsets:
    """The offsets a filtered stream shows, oldest first, 8 bytes each: the ones the
    scan found (kept newest first, so each older chunk it finds is appended, never
    copied in front of the rest) followed by the ones that arrived since."""

    def __init__(self) -> None:
        self._older = array("q")  # descending
        self._newer = array("q")  # ascending

    def __len__(self) -> int:
        return len(self._older) + len(self._newer)

    def __getitem__(self, row: int) -> int:
        if row < 0:
            row += len(self)
        older = len(self._older)
        return self._older[older - 1 - row] if row < older else self._newer[row - older]

    def rows(self, start: int, stop: int) -> list[int]:
        """The offsets of rows ``start`` to ``stop`` (excluded)."""
        return [self[row] for row in range(start, min(stop, len(self)))]

    def add_older(self, found: array[int]) -> None:
        """Offsets (ascending) older than every one held."""
        found.reverse()
        self._older.extend(found)

    def append(self, offset: int) -> None:
        """An offset newer than every one held."""
        self._newer.append(offset)

    def row_of(self, offset: int) -> int:
        """The row of the newest offset up to ``offset`` (-1: none)."""
        low, high = 0, len(self)
        while low < high:
            middle = (low + high) // 2
            if self[middle] <= offset:
                low = middle + 1
            else:
                high = middle
        return low - 1


def fit(text: str, width: int) -> str:
    """``text`` in exactly ``width`` cells: padded, or cut with an ellipsis."""
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, width - 1) + "…"


def _strip(text: Text, console: Console) -> Strip:
    """``text`` as a strip whose every segment has a style: Rich leaves plain runs with
    none, and Textual's colour filters (NO_COLOR's monochrome) read each one's style."""
    plain = Style()
    return Strip([Segment(chunk, style or plain, control)
                  for chunk, style, control in text.render(console, end="")])


def row_text(event: Event, *, offset_width: int = 0, actor_width: int = 12,
             with_time: bool = True) -> Text:
    """A row: offset, time, actor, then the event's one-line story (``narrative.summary``)
    in its type's colour.

    Agent text is appended as plain Text, never parsed as markup, and control
    characters are shown as escapes, so nothing from an agent reaches the terminal."""
    row = Text(no_wrap=True, overflow="ellipsis")
    row.append(f"{event.offset:>{offset_width}} ", "dim")
    if with_time:
        row.append(f"{clock(event.ts)} ", "dim")
    row.append(fit(printable(event.actor or "-"), actor_width) + " ", "bold")
    row.append(printable(summary(event)), TYPE_STYLES.get(event.type, ""))
    return row


def detail_text(event: Event) -> tuple[Text, Text]:
    """The selected event written out: a header (type, actor → recipient, offset) and
    its whole summary, to be wrapped."""
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append(f"@{event.offset} ", "dim")
    head.append(printable(event.type), Style.parse(TYPE_STYLES.get(event.type) or "bold")
                + Style(bold=True))
    head.append(f" {printable(event.actor or '-')}")
    if event.to:
        head.append(f" → {printable(event.to)}")
    head.append(f" {clock(event.ts)}", "dim")  # last: a narrow pane cuts it first
    body = Text(printable(summary(event)), TYPE_STYLES.get(event.type, ""))
    return head, body


class EventStream(ScrollView, can_focus=True):
    """The live log, virtualised; follows the tail unless the user scrolls away.
    Bookkeeping (``narrative.BOOKKEEPING``) is hidden until ``b``."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "move(-20)", "Page up", show=False),
        Binding("pagedown", "move(20)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("enter", "open", "Payload"),
        Binding("b", "toggle_bookkeeping", "Bookkeeping"),
    ]

    DEFAULT_CSS = """
    EventStream { background: $surface; overflow-x: hidden; scrollbar-size-vertical: 1; }
    """

    class Opened(Message):
        """The user asked for an event's full payload."""

        def __init__(self, event: Event) -> None:
            self.event = event
            super().__init__()

    class FollowingChanged(Message):
        """Following the tail was switched on or off (by a key, or by scrolling)."""

    class FilterChanged(Message):
        """What the stream shows changed (the user's filter, or bookkeeping shown or
        hidden): the status line says so."""

    def __init__(self, store: EventStore | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store: EventStore = store  # type: ignore[assignment]  # the app sets it on mount
        self.head = 0  # the log's last offset, as the app last said
        self.total = 0  # rows
        self.filter = Filter()  # the user's filter
        self.show_bookkeeping = False
        self.matches: Offsets | None = None  # the offsets shown; None: every offset
        self.scanned = asyncio.Event()  # set once every offset shown is known
        self._scan_top = 0  # the newest offset the scan covers; newer ones come by grow()
        self._scan_floor = 1  # the scan has covered offsets from here to _scan_top
        self._progress = asyncio.Event()  # set (and replaced) as the scan finds rows
        self.events: LRUCache[int, Event] = LRUCache(maxsize=CACHED_EVENTS)
        self._strips: LRUCache[tuple[int, bool], Strip] = LRUCache(maxsize=160)
        self._detail: tuple[Any, list[Strip]] | None = None
        self._strips_for: tuple[int, ...] = ()  # the layout the strips were cut for
        self._actor_width = ACTOR_MIN
        self.first_rows = asyncio.Event()  # set once a page of rows has been read
        self._loading: dict[int, Worker[None]] = {}
        self._following = True
        self.cursor_row = -1
        self._generation = 0
        self._started = False
        self._update_subtitle()

    @property
    def following(self) -> bool:
        """Whether the view follows the tail (new events scroll it)."""
        return self._following

    @following.setter
    def following(self, value: bool) -> None:
        if value != self._following:
            self._following = value
            self.post_message(self.FollowingChanged())

    @property
    def shown_filter(self) -> Filter:
        """What the rows are: the user's filter, without bookkeeping unless it is shown
        or the user asked for types by name (``type:CHECKPOINT`` shows checkpoints)."""
        if self.show_bookkeeping or self.filter.types:
            return self.filter
        return replace(self.filter, exclude=BOOKKEEPING)

    # -- the rows ---------------------------------------------------------------

    def row_offset(self, row: int) -> int:
        """The log offset shown at ``row``."""
        if self.matches is not None:
            return int(self.matches[row])
        return row + 1

    def row_of(self, offset: int) -> int:
        """The row showing ``offset``, or the nearest one above it (-1: none)."""
        if self.matches is None:
            return min(offset, self.total) - 1
        return self.matches.row_of(offset)

    @property
    def detail_height(self) -> int:
        """Lines under the list for the selected event (none in a short pane)."""
        return 1 + DETAIL_TEXT_LINES if self.size.height >= DETAIL_MIN_HEIGHT else 0

    @property
    def list_height(self) -> int:
        """Lines of rows on screen."""
        return max(self.scrollable_content_region.height - self.detail_height, 1)

    def set_total(self, head: int) -> None:
        """The log's last offset is now ``head`` (the app says so once it has opened the
        log): showing everything, that many rows; else the scan for the rows starts."""
        self.head = max(head, self.head)
        if not self._started:
            self._started = True
            self._start(self.head)
        elif self.matches is None:
            self._set_rows(self.head)

    def _set_rows(self, total: int) -> None:
        if total == self.total:
            return
        self.total = total
        self._resize_virtual()
        if self.following:
            self.cursor_row = total - 1
            self.scroll_to(y=max(total - self.list_height, 0),
                           animate=False, immediate=True, force=True)
        self.refresh()

    def _resize_virtual(self) -> None:
        # The detail area takes the last lines: the list scrolls above it.
        self.virtual_size = Size(self.scrollable_content_region.width,
                                 self.total + self.detail_height)

    def on_resize(self) -> None:
        self._resize_virtual()
        if self.following and self.total > 0:
            self.jump_to_end()

    def _start(self, head: int) -> None:
        """Show ``self.shown_filter`` over a log whose last offset is ``head``."""
        self._generation += 1
        self._loading = {}
        self.scanned = asyncio.Event()
        self._wake_waiters()  # those waiting for the last scan's rows look again
        query = self.shown_filter
        self.total = -1
        if query.empty:
            self.matches = None
            self._set_rows(head)
            self.scanned.set()
        else:
            self.matches = Offsets()
            self._scan_top, self._scan_floor = head, head + 1
            self._set_rows(0)
            self.run_worker(self._scan(self._generation, query), group="stream-scan",
                            exclusive=True, exit_on_error=False)
        self._update_subtitle()

    async def _scan(self, generation: int, query: Filter) -> None:
        """Find the offsets shown, from the newest back to offset 1, in reads that double
        in size; each adds its rows above the ones found so far."""
        size = FIRST_SCAN
        while self._scan_floor > 1:
            low = max(self._scan_floor - size, 1)
            found = await self.store.match_array(
                low, before=self._scan_floor, **query.store_args())
            if generation != self._generation:
                return
            self._scan_floor = low
            self._prepend(found)
            size = min(size * 2, MAX_SCAN)
            self._wake_waiters()
        self.scanned.set()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    async def _wait_for_scan(self, done: Any) -> None:
        """Until ``done()`` holds or every row is known (whichever scan is current)."""
        while not done() and not self.scanned.is_set():
            await self._progress.wait()

    def _prepend(self, found: array[int]) -> None:
        """Older rows were found: above the ones shown, which keep their place on screen."""
        if not found or self.matches is None:
            return
        self.matches.add_older(found)
        added = len(found)
        self.total += added
        self._resize_virtual()
        if self.following:
            self.jump_to_end()
            return
        if self.cursor_row >= 0:
            self.cursor_row += added
        self.scroll_to(y=self.scroll_offset.y + added, animate=False, immediate=True,
                       force=True)
        self.refresh()

    def grow(self, head: int, new_events: list[Event]) -> None:
        """New events were committed (head is the log's last offset)."""
        self.head = max(head, self.head)
        for event in new_events:
            self.events.set(event.offset, event)  # in hand: no read to show it
            self._measure(event)
        if self.matches is None:
            self._set_rows(self.head)
            return
        query = self.shown_filter
        for event in new_events:
            # The scan covers up to _scan_top; newer events are checked here, once.
            newest = max(self.matches[-1] if self.matches else 0, self._scan_top)
            if event.offset > newest and query.matches(event):
                self.matches.append(event.offset)
        self._set_rows(len(self.matches))

    async def apply_filter(self, flt: Filter, head: int) -> None:
        """Show only what ``flt`` matches (an empty filter shows everything but the
        bookkeeping, unless it is shown); the newest rows are on screen when it returns."""
        self.filter = flt
        self.head = max(head, self.head)
        self._started = True
        self.following = True
        self._start(self.head)
        self.jump_to_end()
        await self._wait_for_rows(self.list_height)
        self.post_message(self.FilterChanged())

    async def show_agent(self, name: str) -> None:
        """Show ``name``'s events only (written by it or addressed to it)."""
        await self.apply_filter(Filter(agent=name), self.head)

    async def action_toggle_bookkeeping(self) -> None:
        """Show or hide the bookkeeping rows (checkpoints, status updates, registrations),
        keeping the selected event (or the nearest row above it) selected."""
        offset = self.row_offset(self.cursor_row) if 0 <= self.cursor_row < self.total \
            else None
        following = self.following
        self.show_bookkeeping = not self.show_bookkeeping
        self._start(self.head)
        self.post_message(self.FilterChanged())
        if following or offset is None:
            self.jump_to_end()
            return
        self.following = False
        generation = self._generation
        await self._wait_for_scan(lambda: self._scan_floor <= offset)
        if generation == self._generation:
            self.select_row(max(self.row_of(offset), 0))

    async def _wait_for_rows(self, rows: int) -> None:
        """Until the scan has found ``rows`` rows (or all there are)."""
        await self._wait_for_scan(lambda: self.total >= rows)

    def _update_subtitle(self) -> None:
        if self.filter.types:
            self.border_subtitle = ""  # the types asked for are shown, bookkeeping or not
        else:
            self.border_subtitle = ("b: bookkeeping hidden" if not self.show_bookkeeping
                                    else "b: bookkeeping shown")

    # -- rendering --------------------------------------------------------------

    def _measure(self, event: Event) -> None:
        width = min(cell_len(printable(event.actor or "-")), ACTOR_MAX)
        if width > self._actor_width:
            self._actor_width = width

    def _layout(self) -> tuple[int, ...]:
        last = self.row_offset(self.total - 1) if self.total > 0 else 0
        # Beside the scrollbar, not under it: a row cut under it would lose its "…".
        width = self.scrollable_content_region.width
        return (width, len(str(last)), self._actor_width, width >= TIME_MIN_WIDTH)

    def _event_at(self, row: int) -> Event | None:
        """The event shown at ``row`` if it has been read; else its page is requested."""
        offset = self.row_offset(row)
        event = self.events.get(offset)
        if event is None:
            self._request(row // PAGE)
        return event

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        list_height = self.list_height
        if y >= list_height:
            return self._detail_line(y - list_height, width)
        row = scroll_y + y
        if row >= self.total or row < 0:
            return Strip.blank(width, self.rich_style)
        event = self._event_at(row)
        if event is None:
            return Strip([Segment(f"{self.row_offset(row):>8} …", Style(dim=True))]
                         ).crop_extend(0, width, self.rich_style)
        layout = self._layout()
        if layout != self._strips_for:
            self._strips.clear()
            self._strips_for = layout
        # Rendered rows are kept: following the tail shifts every visible row by one
        # line per new event, and a row's rendering does not change with its position.
        selected = row == self.cursor_row
        strip = self._strips.get((event.offset, selected))
        if strip is None:
            text = row_text(event, offset_width=layout[1], actor_width=layout[2],
                            with_time=bool(layout[3]))
            text.truncate(width, overflow="ellipsis")
            if selected:
                text.stylize("reverse")
            strip = _strip(text, self.app.console).crop_extend(
                0, width, self.rich_style)
            self._strips.set((event.offset, selected), strip)
        return strip

    def _detail_line(self, line: int, width: int) -> Strip:
        event = self._event_at(self.cursor_row) if 0 <= self.cursor_row < self.total \
            else None
        key = (event.offset if event else None, width, self.total, self.show_bookkeeping)
        if self._detail is None or self._detail[0] != key:
            self._detail = (key, self._detail_strips(event, width))
        strips = self._detail[1]
        return strips[line] if line < len(strips) else Strip.blank(width, self.rich_style)

    def _detail_strips(self, event: Event | None, width: int) -> list[Strip]:
        rule = Style(dim=True)
        console = self.app.console
        tail = Text(" ─", rule)
        if event is None:
            hint = "no events" if self.total == 0 else "…"
            if self.total == 0 and not (self.show_bookkeeping or self.filter.types):
                hint += " (b shows bookkeeping too)"
            head, lines = Text(hint, "dim"), []
        else:
            head, body = detail_text(event)
            lines = list(body.wrap(console, max(width - 1, 1)))
            if len(lines) > DETAIL_TEXT_LINES:
                lines = lines[:DETAIL_TEXT_LINES]
                lines[-1].truncate(max(width - 2, 1))
                lines[-1].append("…")
            tail = Text(" enter: payload ─", "dim")
        # The key's hint keeps its place at the right; the header is cut before it.
        header = Text("─ ", rule)
        header.append_text(head)
        header.append(" ")
        header.truncate(max(width - tail.cell_len, 0), overflow="ellipsis")
        header.append("─" * max(width - header.cell_len - tail.cell_len, 0), rule)
        header.append_text(tail)
        header.truncate(width)
        strips = [_strip(header, console).crop_extend(
            0, width, self.rich_style)]
        for text in lines:
            text.rstrip()
            out = Text(" ")
            out.append_text(text)
            out.truncate(width)
            strips.append(_strip(out, console).crop_extend(
                0, width, self.rich_style))
        return strips

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # focus and theme change the pane's style
        self._detail = None

    def _request(self, page_number: int) -> None:
        loading = self._loading.get(page_number)
        if loading is not None and not loading.is_finished:
            return
        # A worker that ended without delivering (cancelled, failed) is simply retried.
        self._loading[page_number] = self.run_worker(
            self._load(page_number, self._generation), group="stream-pages",
            exit_on_error=False)

    async def preload_tail(self, rows: int) -> None:
        """Read the last ``rows`` rows now, so the first frame shows them (rather than
        placeholders, then a second frame once a worker has read them)."""
        await self._wait_for_rows(rows)
        if not self.total:
            self.first_rows.set()  # nothing to read: the first frame can be drawn
            return
        first_page = max(self.total - rows, 0) // PAGE
        for page_number in range(first_page, (self.total - 1) // PAGE + 1):
            await self._load(page_number, self._generation)

    async def _load(self, page_number: int, generation: int) -> None:
        first = page_number * PAGE
        if self.matches is None:
            found = (await self.store.read(first + 1, PAGE)).events
        else:
            found = await self.store.read_offsets(
                self.matches.rows(first, first + PAGE))
        if generation == self._generation:
            for event in found:
                self.events.set(event.offset, event)
                self._measure(event)
            self._loading.pop(page_number, None)
            self.refresh()
            self.first_rows.set()

    # -- keys and the mouse -----------------------------------------------------

    def select_row(self, row: int) -> None:
        """Select ``row`` and scroll it into view; the tail's row follows the tail."""
        if not self.total:
            return
        self.cursor_row = max(0, min(self.total - 1, row))
        self.scroll_to_row(self.cursor_row)
        self.refresh()

    def action_move(self, delta: int) -> None:
        """Move the selection; moving up stops following the tail."""
        if not self.total:
            return
        start = self.cursor_row if self.cursor_row >= 0 else self.total - 1
        self.following = max(0, min(self.total - 1, start + delta)) == self.total - 1 \
            and delta > 0
        self.select_row(start + delta)

    def action_jump(self, row: int) -> None:
        """First (0) or last (-1) row."""
        if row < 0:
            self.jump_to_end()
        else:
            self.following = False
            self.cursor_row = 0 if self.total else -1
            self.scroll_to(y=0, animate=False, immediate=True)
            self.refresh()

    def jump_to_end(self) -> None:
        """Select the newest row and follow the tail."""
        self.following = True
        self.cursor_row = self.total - 1
        # Immediate: a deferred scroll could land after a newer one (to the tail).
        self.scroll_to(y=max(self.total - self.list_height, 0),
                       animate=False, immediate=True, force=True)
        self.refresh()

    def scroll_to_row(self, row: int) -> None:
        """Scroll just enough to show ``row``."""
        top = self.scroll_offset.y
        height = self.list_height
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    def on_click(self, event: events.Click) -> None:
        """A click on a row selects it."""
        where = event.get_content_offset(self)
        if where is not None and where.y < self.list_height:
            row = self.scroll_offset.y + where.y
            if row < self.total:
                self.following = row == self.total - 1
                self.select_row(row)

    async def action_open(self) -> None:
        """Open the selected event's full payload."""
        if self.cursor_row < 0 or self.cursor_row >= self.total:
            return
        found = await self.store.read_offsets([self.row_offset(self.cursor_row)])
        if found:
            self.post_message(self.Opened(found[0]))
