"""One agent's transcript: what it was asked, what it said and thought, its tool calls
with their inputs and results, the permissions it asked for and their answers, live.

Like the stream pane it never holds the transcript: the offsets of the agent's events
are found from the tail backwards (8 bytes each), the events read in pages only where
the screen shows them, and each event is drawn as a block of lines (its text wrapped,
long results folded to a few lines: ``enter`` unfolds the selected one). The view is
anchored on a block (the top one, or the last one while it follows the tail), so the
blocks above the screen are never read to know where the screen is.

Every text is shown literally: Rich ``Text`` from plain strings, control characters as
escapes (``safe_text``), newlines kept as lines.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from typing import Any, NamedTuple

from rich.console import Console
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.strip import Strip
from textual.widget import Widget
from textual.worker import Worker

from sisyphus_tui.narrative import headline
from sisyphus_tui.safe_text import printable, printable_lines
from sisyphus_tui.stream.base import Event, EventStore
from sisyphus_tui.timefmt import clock
from sisyphus_tui.tui.widgets.event_stream import FIRST_SCAN, MAX_SCAN, Offsets, _strip
from sisyphus_tui.usage import Usage, cost_text, tokens_of, tokens_text

PAGE = 100
CACHED_EVENTS = 2000
CACHED_BLOCKS = 400
CACHED_STRIPS = 300  # a few screens of lines
# The types an agent's transcript shows: found by the agent as actor or recipient...
TYPES = ("AGENT_OUTPUT", "TURN_STARTED", "MESSAGE", "PERMISSION_REQUESTED",
         "PERMISSION_ANSWERED", "AGENT_CANCELLED", "AGENT_STALLED")
# ... and the ones that name it only in their payload (a person's answer: its actor is
# the person, and it is addressed to nobody, so no inbox counts it as pending).
BY_PAYLOAD = ("PERMISSION_ANSWERED", "PERMISSION_REQUESTED", "AGENT_CANCELLED",
              "AGENT_STALLED")
# Folded to this many lines until unfolded (enter): a tool's result, an input, thinking.
FOLDS = {"tool_result": 4, "tool_call": 6, "thinking": 6, "permission": 6, "raw": 2,
         "MESSAGE": 8}
GUTTER = 2
BODY_INDENT = 2  # a block's body under its heading
SCROLL_LINES = 3  # a turn of the mouse wheel


class Anchor(NamedTuple):
    """Where the screen starts: a block (by row) and a line inside it."""

    row: int
    line: int


def concerns(event: Event, agent: str) -> bool:
    """Whether ``event`` belongs in ``agent``'s transcript (the rule the scan applies,
    with the payload's agent checked)."""
    if event.type not in TYPES:
        return False
    if event.type in BY_PAYLOAD:
        return event.payload.get("agent") == agent
    return agent in (event.actor, event.to)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _usage(data: dict[str, Any]) -> str:
    """A usage output's figures: as accounted when appended (``tokens_in``...), or as
    the backend gave them (``input_tokens``...)."""
    if "tokens_in" in data:
        counts = [data.get(k) for k in ("tokens_in", "tokens_out", "tokens_cached")]
        tokens = tuple(c if isinstance(c, int) else 0 for c in counts)
    else:
        tokens = tokens_of(None, data)
    cost = data.get("cost_usd")
    used = Usage(tokens[0], tokens[1], tokens[2],
                 float(cost) if isinstance(cost, int | float) else 0.0,
                 bool(data.get("cost_is_estimate")))
    return (f"{tokens_text(used.tokens_in)} in, {tokens_text(used.tokens_out)} out, "
            f"{tokens_text(used.tokens_cached)} cached, {cost_text(used)}")


def block_parts(event: Event) -> tuple[Text, str, str, str]:
    """How an event reads in a transcript: its heading (one line, styled), its body
    (text, several lines), the body's style and its fold kind ('' : never folded)."""
    p = event.payload
    when = f"{clock(event.ts)} "
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append(when, "dim")
    raw = p.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    text = str(p.get("text") or "")
    if event.type == "AGENT_OUTPUT":
        kind = str(p.get("kind") or "?")
        if kind == "text":
            head.append("says", "bold")
            return head, text, "", ""
        if kind == "thinking":
            head.append("thinks", "dim italic")
            return head, text, "dim italic", "thinking"
        if kind == "tool_call":
            head.append(f"⚙ {printable(str(data.get('name') or '?'))}", "bold cyan")
            return head, _json(data.get("input", {})), "cyan", "tool_call"
        if kind == "tool_result":
            error = bool(data.get("is_error"))
            head.append("↳ error" if error else "↳ result", "bold red" if error else "bold")
            return head, text, "red" if error else "", "tool_result"
        if kind == "permission":
            head.append(f"? {printable(str(data.get('name') or '?'))}: "
                        f"{printable(str(data.get('decision') or '?'))}", "yellow")
            return head, _json(data.get("input", {})), "dim", "permission"
        if kind == "usage":
            head.append(f"usage: {_usage(data)}", "dim")
            return head, "", "", ""
        if kind == "session":
            head.append(f"session {printable(str(data.get('session_id') or '?'))}", "dim")
            return head, "", "", ""
        if kind == "error":
            head.append("error", "bold red")
            return head, text, "red", ""
        if kind == "finished":
            head.append(f"turn finished ({printable(str(data.get('stop_reason') or '-'))})",
                        "dim")
            return head, "", "", ""
        head.append(printable(kind), "dim")
        return head, text or str(p.get("raw") or ""), "dim", "raw"
    if event.type == "TURN_STARTED":
        model = f", {p['model']}" if p.get("model") else ""
        head.append(f"── turn on message @{p.get('message')}, attempt {p.get('attempt', 1)} "
                    f"({printable(str(p.get('backend')))}{printable(model)})"
                    + (", recovering" if p.get("recovering") else "") + " ──", "bold")
        return head, "", "", ""
    if event.type == "MESSAGE":
        head.append(f"✉ {printable(event.actor or '-')} → {printable(event.to or '-')}: "
                    f"{printable(str(p.get('kind') or 'message'))}", "bold magenta")
        return head, text, "", "MESSAGE"
    if event.type == "PERMISSION_REQUESTED":
        head.append(f"? asks to use {printable(str(p.get('tool')))}", "bold yellow")
        reason = str(p.get("reason") or "")
        body = (f"reason: {reason}\n" if reason else "") + _json(p.get("input", {}))
        return head, body, "", "permission"
    if event.type == "PERMISSION_ANSWERED":
        allowed = p.get("decision") == "allow"
        what = ("✓ allowed" + (" always (this run)" if p.get("always") else "")) \
            if allowed else "✗ denied"
        head.append(f"{what} by {printable(str(p.get('by') or '-'))}",
                    "bold green" if allowed else "bold red")
        return head, str(p.get("message") or ""), "", ""
    if event.type == "AGENT_CANCELLED":
        head.append(f"turn cancelled ({printable(str(p.get('how') or 'none'))})",
                    "bold magenta")
        return head, "", "", ""
    if event.type == "AGENT_STALLED":
        head.append(f"no output for {float(p.get('silent_s') or 0):.0f}s", "bold red")
        return head, "", "", ""
    head.append(printable(event.type), "dim")
    return head, headline(json.dumps(p, ensure_ascii=False)), "dim", "raw"


def block_lines(event: Event, width: int, console: Console, *, unfolded: bool
                ) -> tuple[list[Text], bool]:
    """The lines an event's block shows at ``width`` (the gutter left out), and whether
    some are folded away."""
    head, body, style, fold = block_parts(event)
    lines = [head]
    if body.strip():
        text = Text(printable_lines(body.rstrip("\n")), style)
        for line in text.wrap(console, max(width - BODY_INDENT, 1)):
            lines.append(Text(" " * BODY_INDENT) + line)
    limit = FOLDS.get(fold)
    folded = limit is not None and not unfolded and len(lines) > limit + 2
    if folded and limit is not None:
        hidden = len(lines) - 1 - limit
        lines = lines[:1 + limit] + [Text(" " * BODY_INDENT + f"… {hidden} more lines "
                                          "(enter shows them)", "dim italic")]
    for line in lines:
        line.truncate(max(width, 1), overflow="ellipsis")
    return lines, folded


class TranscriptView(Widget, can_focus=True):
    """An agent's transcript, one block per event, newest at the bottom; follows the
    tail until the user moves up."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("enter,space", "toggle_fold", "Fold/unfold"),
    ]
    DEFAULT_CSS = "TranscriptView { background: $surface; }"

    def __init__(self, store: EventStore, agent: str, head: int, *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.agent = agent
        self.head = head
        self.offsets = Offsets()
        self.events: LRUCache[int, Event] = LRUCache(maxsize=CACHED_EVENTS)
        self._blocks: LRUCache[tuple[int, int, bool], tuple[list[Text], bool]] = \
            LRUCache(maxsize=CACHED_BLOCKS)
        self._strips: LRUCache[tuple[int, int, int, bool, bool], Strip] = LRUCache(
            maxsize=CACHED_STRIPS)
        self.unfolded: set[int] = set()
        self.hidden: set[int] = set()  # found by the text scan, another agent's
        self.cursor = -1  # the selected block's row
        self.top = Anchor(0, 0)
        self.following = True
        self.at_first = False  # g: the first block stays on top while older ones are found
        self.scanned = asyncio.Event()
        self.reads = 0  # pages read from the store (tests: only what is on screen)
        self._scan_top = head
        self._loading: dict[int, Worker[None]] = {}
        self._frame: list[tuple[int, int]] | None = None  # (row, line) per screen line

    # -- the rows ---------------------------------------------------------------

    @property
    def total(self) -> int:
        """Blocks in the transcript (found so far)."""
        return len(self.offsets)

    def on_mount(self) -> None:
        self.run_worker(self._scan(), group="transcript-scan", exclusive=True,
                        exit_on_error=False)

    async def _scan(self) -> None:
        """The agent's offsets, from the newest back to offset 1, in reads that double."""
        size, floor = FIRST_SCAN, self._scan_top + 1
        while floor > 1:
            low = max(floor - size, 1)
            found = await self.store.match_array(low, before=floor, agent=self.agent,
                                                 types=list(TYPES))
            # An answer names the agent in its payload only: found by its text, checked
            # once read (another agent's is hidden).
            named = await self.store.match_array(low, before=floor, types=list(BY_PAYLOAD),
                                                 text=self.agent)
            floor = low
            merged = array("q", sorted(set(found) | set(named)))
            self._prepend(merged)
            size = min(size * 2, MAX_SCAN)
        self.scanned.set()

    def _prepend(self, found: array[int]) -> None:
        if not found:
            return
        self.offsets.add_older(found)
        added = len(found)
        if self.at_first:
            self.cursor, self.top = 0, Anchor(0, 0)
        elif not self.following:
            self.cursor += added
            self.top = Anchor(self.top.row + added, self.top.line)
        else:
            self.cursor = self.total - 1
        self._changed()

    def grow(self, head: int, new_events: list[Event]) -> None:
        """Events committed since the last call (the app's tail): the agent's join."""
        self.head = max(head, self.head)
        newest = max(self.offsets[-1] if self.total else 0, self._scan_top)
        added = False
        for event in new_events:
            if event.offset > newest and concerns(event, self.agent):
                self.offsets.append(event.offset)
                self.events.set(event.offset, event)
                newest, added = event.offset, True
        if added:
            if self.following:
                self.cursor = self.total - 1
            self._changed()

    def _changed(self) -> None:
        self._frame = None
        self._update_subtitle()
        self.refresh()

    def _update_subtitle(self) -> None:
        where = "following" if self.following else f"{self.cursor + 1}/{self.total}"
        self.border_subtitle = f"{where} · {self.total - len(self.hidden)} events"

    # -- reading ------------------------------------------------------------------

    def _event_at(self, row: int) -> Event | None:
        event = self.events.get(self.offsets[row])
        if event is None:
            self._request(row // PAGE)
        return event

    def _request(self, page: int) -> None:
        loading = self._loading.get(page)
        if loading is not None and not loading.is_finished:
            return
        self._loading[page] = self.run_worker(self._load(page), group="transcript-pages",
                                              exit_on_error=False)

    async def _load(self, page: int) -> None:
        first = page * PAGE
        found = await self.store.read_offsets(self.offsets.rows(first, first + PAGE))
        self.reads += 1
        for event in found:
            self.events.set(event.offset, event)
            if not concerns(event, self.agent):
                self.hidden.add(event.offset)
        # (Following, the selection is the last block the agent's: not a hidden one.)
        while self.following and self.cursor > 0 and self.offsets[self.cursor] in self.hidden:
            self.cursor -= 1
        self._loading.pop(page, None)
        self._changed()

    # -- layout -------------------------------------------------------------------

    def _lines_of(self, row: int) -> list[Text] | None:
        """The block at ``row`` (the gutter left out), or None while it is read."""
        event = self._event_at(row)
        if event is None:
            return None
        if event.offset in self.hidden:
            return []
        width = max(self.size.width - GUTTER, 1)
        key = (event.offset, width, event.offset in self.unfolded)
        block = self._blocks.get(key)
        if block is None:
            block = block_lines(event, width, self.app.console,
                                unfolded=event.offset in self.unfolded)
            self._blocks.set(key, block)
        return block[0]

    def _height(self, row: int) -> int:
        lines = self._lines_of(row)
        return 1 if lines is None else len(lines)  # a block being read: its placeholder

    def _tail_anchor(self, row: int) -> Anchor:
        """The anchor that shows ``row``'s last line at the bottom of the screen."""
        room = self.size.height
        while row >= 0:
            height = self._height(row)
            if height >= room:
                return Anchor(row, height - room)
            room -= height
            row -= 1
        return Anchor(0, 0)

    def frame(self) -> list[tuple[int, int]]:
        """The (row, line) each screen line shows, from the anchor down."""
        if self._frame is not None:
            return self._frame
        if not self.total:
            self._frame = []
            return self._frame
        if self.following:
            self.top = self._tail_anchor(self.total - 1)
        row, line = self.top
        row = max(0, min(row, self.total - 1))
        out: list[tuple[int, int]] = []
        while len(out) < self.size.height and row < self.total:
            height = self._height(row)
            out += [(row, n) for n in range(line, height)][:self.size.height - len(out)]
            row, line = row + 1, 0
        self._frame = out
        return out

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        frame = self.frame()
        if y >= len(frame):
            if y == 0 and not self.total:
                hint = "reading…" if not self.scanned.is_set() else "nothing yet"
                return _strip(Text(f"  {hint}", "dim"), self.app.console).crop_extend(
                    0, width, self.rich_style)
            return Strip.blank(width, self.rich_style)
        row, line = frame[y]
        lines = self._lines_of(row)
        selected = row == self.cursor
        # Rendered lines are kept: following the tail moves every line up as the agent
        # streams, and a line's rendering does not change with its place.
        offset = self.offsets[row]
        key = (offset, line, width, selected, offset in self.unfolded)
        strip = self._strips.get(key) if lines is not None else None
        if strip is not None:
            return strip
        out = Text(no_wrap=True, end="")
        if line == 0:
            out.append("▸ " if selected else "  ", "bold reverse" if selected else "")
        else:
            out.append("▏ " if selected else "  ", "dim")
        if lines is None:
            out.append(f"@{self.offsets[row]} …", "dim")
        elif line < len(lines):
            out.append_text(lines[line])
        out.truncate(width)
        strip = _strip(out, self.app.console).crop_extend(0, width, self.rich_style)
        if lines is not None:
            self._strips.set(key, strip)
        return strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # the theme changed

    def on_resize(self, event: events.Resize) -> None:
        self._changed()

    # -- moving -------------------------------------------------------------------

    def _visible_rows(self) -> list[int]:
        return sorted({row for row, _ in self.frame()})

    def _shown(self, row: int) -> bool:
        """Whether ``row``'s block starts on the screen."""
        return (row, 0) in self.frame()

    def select(self, row: int) -> None:
        """Select the block at ``row`` (clamped, skipping hidden ones) and show it; the
        last one follows the tail."""
        if not self.total:
            return
        row = max(0, min(row, self.total - 1))
        self.cursor = row
        self.at_first = False
        self.following = row == self.total - 1
        if not self.following and not self._shown(row):
            if row < self.top.row or (row == self.top.row and self.top.line):
                self.top = Anchor(row, 0)
            else:
                anchor = self._tail_anchor(row)
                self.top = anchor if anchor.row < row or (
                    anchor.row == row and anchor.line == 0) else Anchor(row, 0)
        self._changed()

    def action_move(self, delta: int) -> None:
        """The previous or next block (one the text scan found for another agent is
        stepped over)."""
        if not self.total:
            return
        row = (self.cursor if self.cursor >= 0 else self.total - 1) + delta
        while 0 <= row < self.total and self.offsets[row] in self.hidden:
            row += 1 if delta > 0 else -1
        self.select(row)

    def scroll_lines(self, lines: int) -> None:
        """Move the screen by ``lines`` (negative: up); the selection stays on screen."""
        if not self.total:
            return
        self.frame()
        row, line = self.top
        if lines < 0:
            line += lines
            while line < 0 and row > 0:
                row -= 1
                line += self._height(row)
            row, line = (row, max(line, 0))
        else:
            line += lines
            while row < self.total - 1 and line >= self._height(row):
                line -= self._height(row)
                row += 1
        tail = self._tail_anchor(self.total - 1)
        self.at_first = False
        self.following = (row, line) >= tail
        self.top = tail if self.following else Anchor(row, line)
        self._frame = None
        visible = self._visible_rows()
        if visible and self.cursor not in visible:
            self.cursor = visible[0] if lines < 0 or not self.following else visible[-1]
        if self.following:
            self.cursor = self.total - 1
        self._changed()

    def action_page(self, direction: int) -> None:
        """A screenful up or down."""
        self.scroll_lines(direction * max(self.size.height - 1, 1))

    def action_jump(self, row: int) -> None:
        """The first (0) or last (-1) block."""
        if row < 0:
            self.select(self.total - 1)
        else:
            self.top = Anchor(0, 0)
            self.select(0)
            self.at_first = True

    def action_toggle_fold(self) -> None:
        """Unfold the selected block's folded lines, or fold them again."""
        if not 0 <= self.cursor < self.total:
            return
        offset = self.offsets[self.cursor]
        self.unfolded.symmetric_difference_update({offset})
        if self.following and offset in self.unfolded:
            # Unfolded at the tail: its start stays on the screen, not pushed above it.
            self.following = False
            self.top = Anchor(self.cursor, 0)
        self._changed()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.scroll_lines(-SCROLL_LINES)
        event.stop()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self.scroll_lines(SCROLL_LINES)
        event.stop()

    def on_click(self, event: events.Click) -> None:
        """A click selects the block under it."""
        where = event.get_content_offset(self)
        frame = self.frame()
        if where is not None and 0 <= where.y < len(frame):
            self.cursor = frame[where.y][0]
            self.following = False
            self._changed()

    # -- reading what is shown (tests, screenshots) ----------------------------------

    @property
    def shown_text(self) -> str:
        """The screen's lines, plain."""
        return "\n".join(self.render_line(y).text.rstrip() for y in range(self.size.height))
