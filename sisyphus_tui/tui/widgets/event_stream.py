"""The event stream pane: a virtual scroll view over the log.

Its height is the number of matching events; only the visible rows are rendered,
from pages read from the store (an LRU of a few pages), so a log of a million events
opens as fast and in as little memory as an empty one, and scrolls back to offset 1.
Without a filter, row ``r`` is offset ``r + 1`` (offsets are gap-free); with one, the
matching offsets are kept as a compact array.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import Worker

from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event, EventStore

PAGE = 100
TYPE_STYLES = {
    "PHASE": "bold magenta", "TASK_INIT": "bold magenta", "PLAN_INIT": "cyan",
    "PLAN_STEP": "cyan", "REVIEW": "bold cyan", "FILE_EDIT": "yellow", "TEST_FAIL": "bold red",
    "TEST_PASS": "bold green", "GATE_RESULT": "bold blue", "MESSAGE": "white",
    "AGENT_FAILED": "bold red", "AGENT_STALE": "red", "CONTEXT_WIPED": "bold red",
    "RESUMED": "bold green", "CONTROL": "bold white", "CHECKPOINT": "dim",
    "STATUS_UPDATE": "dim",
}


@dataclass(frozen=True)
class Filter:
    """What the stream shows: ``agent:NAME type:TYPE`` and free text."""

    agent: str | None = None
    types: tuple[str, ...] = ()
    text: str | None = None

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
        return self.agent is None and not self.types and self.text is None

    def matches(self, event: Event) -> bool:
        """The same test the store's ``match_offsets`` applies, for new events."""
        if self.agent is not None and self.agent not in (event.actor, event.to):
            return False
        if self.types and event.type not in self.types:
            return False
        if self.text is not None:
            needle = self.text.lower()
            blob = json.dumps(event.payload, separators=(",", ":")).lower()
            if not (needle in event.type.lower() or needle in (event.actor or "").lower()
                    or needle in blob):
                return False
        return True

    def describe(self) -> str:
        """The filter as the user typed it."""
        parts = ([f"agent:{self.agent}"] if self.agent else []) + [
            f"type:{t}" for t in self.types] + ([self.text] if self.text else [])
        return " ".join(parts)


SUMMARY_FIELDS = {
    "STATUS_UPDATE": ("state", "detail"), "CHECKPOINT": ("cursor", "step"),
    "FILE_EDIT": ("path", "step"), "TEST_FAIL": ("step", "exit_code"),
    "TEST_PASS": ("step", "duration_s"), "GATE_RESULT": ("gate", "passed", "exit_code"),
    "PHASE": ("phase", "reason"), "PLAN_INIT": ("plan_id", "approach"),
    "PLAN_STEP": ("step", "title"), "REVIEW": ("plan_id", "verdict", "reasons"),
    "AGENT_SPAWNED": ("agent", "role", "skill"), "AGENT_REGISTERED": ("agent", "role"),
    "CONTEXT_WIPED": ("agent",), "RESUMED": ("agent", "cursor", "reread", "duration_ms"),
    "CONTROL": ("action", "agent", "gate", "skill"), "TASK_INIT": ("goal",),
    "AGENT_FAILED": ("agent", "error"), "AGENT_STALE": ("agent", "silent_s"),
    "MEMORY_STORED": ("title",), "MEMORY_FEEDBACK": ("memory_id", "helpful"),
    "AGENT_OUTPUT": ("kind", "text"),
}


def summarize(event: Event) -> str:
    """One line of payload: a message's text, the fields that matter for its type, or
    its compact JSON."""
    text = event.payload.get("text")
    if isinstance(text, str) and text:
        return text
    fields = SUMMARY_FIELDS.get(event.type)
    if fields:
        parts = [f"{k}={event.payload[k]}" for k in fields
                 if event.payload.get(k) not in (None, "", [])]
        if parts:
            return " ".join(parts)
    return json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False)


def row_text(event: Event) -> Text:
    """A row: offset, time, actor, type (as text and colour), one-line summary.

    Agent text is appended as plain Text, never parsed as markup, and control
    characters are shown as escapes, so nothing from an agent reaches the terminal."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.ts))
    row = Text(no_wrap=True, overflow="ellipsis")
    row.append(f"{event.offset:>7} ", "dim")
    row.append(f"{clock} ", "dim")
    row.append(f"{printable(event.actor or '-')[:10]:<10} ", "bold")
    row.append(f"{printable(event.type)[:13]:<13} ", TYPE_STYLES.get(event.type, "white"))
    if event.to:
        row.append(f"→{printable(event.to)[:10]} ", "italic")
    row.append(printable(summarize(event))[:400])
    return row


class EventStream(ScrollView, can_focus=True):
    """The live log, virtualised; follows the tail unless the user scrolls away."""

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "move(-20)", "Page up", show=False),
        Binding("pagedown", "move(20)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "open", "Payload"),
    ]

    DEFAULT_CSS = """
    EventStream { background: $surface; overflow-x: hidden; }
    """

    class Opened(Message):
        """The user asked for an event's full payload."""

        def __init__(self, event: Event) -> None:
            self.event = event
            super().__init__()

    class FollowingChanged(Message):
        """Following the tail was switched on or off (by a key, or by scrolling)."""

    def __init__(self, store: EventStore | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store: EventStore = store  # type: ignore[assignment]  # the app sets it on mount
        self.total = 0
        self.filter = Filter()
        self.matches: array[int] | None = None
        self.pages: LRUCache[int, list[Event]] = LRUCache(maxsize=16)
        self._strips: LRUCache[tuple[int, bool], Strip] = LRUCache(maxsize=160)
        self._strips_for = (0, 0)  # the width and horizontal scroll they were cut for
        self.first_rows = asyncio.Event()  # set once a page of rows has been read
        self._loading_pages: dict[int, Worker[None]] = {}
        self._following = True
        self.cursor_row = -1
        self._generation = 0

    @property
    def following(self) -> bool:
        """Whether the view follows the tail (new events scroll it)."""
        return self._following

    @following.setter
    def following(self, value: bool) -> None:
        if value != self._following:
            self._following = value
            self.post_message(self.FollowingChanged())

    # -- the rows ---------------------------------------------------------------

    def row_offset(self, row: int) -> int:
        """The log offset shown at ``row``."""
        if self.matches is not None:
            return int(self.matches[row])
        return row + 1

    def set_total(self, total: int) -> None:
        """The log (or the filtered view) now has ``total`` rows."""
        if total == self.total:
            return
        self.total = total
        self.virtual_size = Size(self.scrollable_content_region.width, total)
        if self.following:
            self.cursor_row = total - 1
            self.scroll_to(y=max(total - self.scrollable_content_region.height, 0),
                           animate=False, immediate=True, force=True)
        self.refresh()

    def on_resize(self) -> None:
        if self.following and self.total > 0:
            self.jump_to_end()

    def grow(self, head: int, new_events: list[Event]) -> None:
        """New events were committed (head is the log's last offset)."""
        if self.matches is None:
            # The new events are in hand: extend the cached page they belong to, so the
            # rows appear without a read (and without placeholders flashing).
            for event in new_events:
                row = event.offset - 1
                page = self.pages.get(row // PAGE)
                if page is not None and len(page) == row % PAGE:
                    page.append(event)
                elif page is None and row % PAGE == 0:
                    self.pages.set(row // PAGE, [event])  # the tail starts a new page
            self.set_total(head)
            return
        for event in new_events:
            if self.filter.matches(event) and (not self.matches or
                                              event.offset > self.matches[-1]):
                self.matches.append(event.offset)
        self.set_total(len(self.matches))

    async def apply_filter(self, flt: Filter, head: int) -> None:
        """Show only what ``flt`` matches (an empty filter shows everything)."""
        self._generation += 1
        self.filter = flt
        self.pages.clear()
        self._loading_pages = {}
        if flt.empty:
            self.matches = None
            self.total = -1
            self.set_total(head)
        else:
            offsets = await self.store.match_offsets(
                agent=flt.agent, types=list(flt.types) or None, text=flt.text)
            self.matches = array("q", offsets)
            self.total = -1
            self.set_total(len(self.matches))
        self.following = True
        self.jump_to_end()

    # -- rendering --------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.size.width
        if row >= self.total or row < 0:
            return Strip.blank(width, self.rich_style)
        page_number = row // PAGE
        page = self.pages.get(page_number)
        if page is None:
            self._request(page_number)
            return Strip([Segment(f"{self.row_offset(row):>8} …", Style(dim=True))]
                         ).crop_extend(0, width, self.rich_style)
        index = row - page_number * PAGE
        if index >= len(page):
            self.pages.discard(page_number)
            self._request(page_number)
            return Strip.blank(width, self.rich_style)
        # Rendered rows are kept: following the tail shifts every visible row by one
        # line per new event, and a row's rendering does not change with its position.
        selected = row == self.cursor_row
        if (width, scroll_x) != self._strips_for:
            self._strips.clear()
            self._strips_for = (width, scroll_x)
        strip = self._strips.get((page[index].offset, selected))
        if strip is None:
            text = row_text(page[index])
            if selected:
                text.stylize("reverse")
            segments = list(text.render(self.app.console))
            strip = Strip(segments).crop_extend(scroll_x, scroll_x + width, self.rich_style)
            self._strips.set((page[index].offset, selected), strip)
        return strip.apply_offsets(scroll_x, row)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # focus and theme change the pane's style

    def _request(self, page_number: int) -> None:
        loading = self._loading_pages.get(page_number)
        if loading is not None and not loading.is_finished:
            return
        # A worker that ended without delivering (cancelled, failed) is simply retried.
        self._loading_pages[page_number] = self.run_worker(
            self._load(page_number, self._generation), group="stream-pages",
            exit_on_error=False)

    async def preload_tail(self, rows: int) -> None:
        """Read the pages of the last ``rows`` rows now, so the first frame shows them
        (rather than placeholders, then a second frame once a worker has read them)."""
        if self.matches is not None or not self.total:
            return
        first_page = max(self.total - rows, 0) // PAGE
        for page_number in range(first_page, (self.total - 1) // PAGE + 1):
            await self._load(page_number, self._generation)

    async def _load(self, page_number: int, generation: int) -> None:
        first = page_number * PAGE
        if self.matches is None:
            events = (await self.store.read(first + 1, PAGE)).events
        else:
            matches = self.matches
            events = await self.store.read_offsets(
                [int(o) for o in matches[first : first + PAGE]])
        if generation == self._generation:
            self.pages.set(page_number, events)
            self._loading_pages.pop(page_number, None)
            self.refresh()
            self.first_rows.set()

    # -- keys -------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        """Move the selection; moving up stops following the tail."""
        if not self.total:
            return
        start = self.cursor_row if self.cursor_row >= 0 else self.total - 1
        self.cursor_row = max(0, min(self.total - 1, start + delta))
        self.following = self.cursor_row == self.total - 1 and delta > 0
        self.scroll_to_row(self.cursor_row)
        self.refresh()

    def action_jump(self, row: int) -> None:
        """First (0) or last (-1) row."""
        if row < 0:
            self.jump_to_end()
        else:
            self.following = False
            self.cursor_row = 0 if self.total else -1
            self.scroll_to(y=0, animate=False)
            self.refresh()

    def jump_to_end(self) -> None:
        """Select the newest row and follow the tail."""
        self.following = True
        self.cursor_row = self.total - 1
        # Immediate: a deferred scroll could land after a newer one (to the tail).
        self.scroll_to(y=max(self.total - self.scrollable_content_region.height, 0),
                       animate=False, immediate=True, force=True)
        self.refresh()

    def scroll_to_row(self, row: int) -> None:
        """Scroll just enough to show ``row``."""
        top = self.scroll_offset.y
        height = self.scrollable_content_region.height
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False)

    async def action_open(self) -> None:
        """Open the selected event's full payload."""
        if self.cursor_row < 0 or self.cursor_row >= self.total:
            return
        events = await self.store.read_offsets([self.row_offset(self.cursor_row)])
        if events:
            self.post_message(self.Opened(events[0]))
