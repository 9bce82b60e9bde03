"""The agents table, the selected agent's inbox and the status line."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markdown import Markdown
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from sisyphus_tui.ledger import AgentView, Ledger
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event
from sisyphus_tui.tui.literal import literal
from sisyphus_tui.tui.widgets.event_stream import row_text

STATE_STYLES = {
    "working": "bold green", "idle": "white", "waiting": "yellow", "stale": "bold red",
    "wiped": "bold red", "blocked": "bold red", "done": "dim", "failed": "bold red",
}
COLUMNS = ("agent", "state", "lag", "active", "role", "phase", "cursor", "thinking")
MAILBOXES = ("swarm", "human")


class AgentsTable(ScrollView, can_focus=True):
    """Every agent: name, state, lag (log head minus cursor), last activity, role/skill,
    phase, cursor, thinking mode; one line each, sorted by name, the selection kept.

    A scroll view drawing lines it keeps rendered: under load the lag and cursor of every
    agent change on each refresh, and a DataTable re-rendered all of its cells through
    Rich for each change (a quarter of the event loop's time in the benchmark). Here a
    changed row is rendered once and only its line is redrawn."""

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "move(-10)", "Page up", show=False),
        Binding("pagedown", "move(10)", "Page down", show=False),
        Binding("home", "move(-1000000)", "First", show=False),
        Binding("end", "move(1000000)", "Last", show=False),
        Binding("left", "scroll_left", "Left", show=False),
        Binding("right", "scroll_right", "Right", show=False),
    ]
    COMPONENT_CLASSES = {"agents-table--header", "agents-table--cursor"}
    DEFAULT_CSS = """
    AgentsTable { background: $surface; }
    AgentsTable > .agents-table--header { text-style: bold; background: $panel; }
    AgentsTable > .agents-table--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
    }
    AgentsTable:focus > .agents-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    """

    class Highlighted(Message):
        """Another agent is selected."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[str] = []  # the agents' names, in display order
        self.cursor_row = 0
        self._cells: list[list[Text]] = []
        self._widths = [len(column) for column in COLUMNS]
        self._strips: dict[tuple[int, bool], Strip] = {}

    @property
    def selected(self) -> str | None:
        """The agent on the cursor row."""
        return self.rows[self.cursor_row] if self.rows else None

    def show(self, ledger: Ledger, head: int, now: float | None = None) -> None:
        """Bring the rows up to date (by name; the selected agent stays selected)."""
        now = time.time() if now is None else now
        selected = self.selected
        agents = [a for a in sorted(ledger.agents.values(), key=lambda a: a.name)
                  if a.name not in MAILBOXES]
        cells = [self._cells_of(agent, head, now) for agent in agents]
        widths = [max([len(column)] + [row[i].cell_len for row in cells])
                  for i, column in enumerate(COLUMNS)]
        names = [agent.name for agent in agents]
        if names != self.rows or widths != self._widths:
            self.rows, self._cells, self._widths = names, cells, widths
            self._strips.clear()
            if selected in names:
                self.cursor_row = names.index(selected)
            self.cursor_row = max(0, min(self.cursor_row, len(names) - 1))
            self.virtual_size = Size(sum(widths) + 2 * len(widths) + 1, len(names) + 1)
            self._scroll_into_view(self.cursor_row)
            self.refresh()
            if self.selected != selected:
                self.post_message(self.Highlighted())
            return
        for row, (old, new) in enumerate(zip(self._cells, cells, strict=True)):
            if any(a.plain != b.plain or a.style != b.style for a, b in zip(old, new, strict=True)):
                self._cells[row] = new
                self._strips.pop((row, False), None)
                self._strips.pop((row, True), None)
                self._refresh_row(row)

    # -- drawing ------------------------------------------------------------------

    def _refresh_row(self, row: int) -> None:
        y = row + 1 - self.scroll_offset.y  # below the header
        if 1 <= y < self.scrollable_content_region.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def _scroll_into_view(self, row: int) -> None:
        # The content region: without the horizontal scrollbar the wide table usually has.
        top = self.scroll_offset.y
        visible = max(self.scrollable_content_region.height - 1, 1)  # minus the header
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + visible:
            self.scroll_to(y=row - visible + 1, animate=False, immediate=True)

    def _line(self, cells: list[Text] | None, style: Style, marker: str) -> Strip:
        line = Text(marker, no_wrap=True, end="")
        for i, width in enumerate(self._widths):
            cell = cells[i] if cells is not None else Text(COLUMNS[i])
            line.append_text(cell)
            line.append(" " * (width - cell.cell_len + 2))
        line.stylize(style)
        return Strip(line.render(self.app.console))

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            strip = self._line(None, self.get_component_rich_style("agents-table--header"),
                               " ")
        else:
            row = scroll_y + y - 1
            if row >= len(self.rows):
                return Strip.blank(width, self.rich_style)
            selected = row == self.cursor_row
            key = (row, selected)
            strip = self._strips.get(key)  # type: ignore[assignment]
            if strip is None:
                style = self.get_component_rich_style("agents-table--cursor") if selected \
                    else Style()
                # The marker shows the selection without colours too (NO_COLOR).
                strip = self._line(self._cells[row], style, "▸" if selected else " ")
                self._strips[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # focus and theme change the cursor's style

    # -- keys and mouse ---------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        """Move the selection."""
        self.select_row(self.cursor_row + delta)

    def select_row(self, row: int) -> None:
        """Select the agent at ``row`` (clamped) and scroll it into view."""
        if not self.rows:
            return
        row = max(0, min(row, len(self.rows) - 1))
        if row == self.cursor_row:
            return
        previous, self.cursor_row = self.cursor_row, row
        self._scroll_into_view(row)
        self._refresh_row(previous)
        self._refresh_row(row)
        self.post_message(self.Highlighted())

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)  # None on the border
        if offset is not None and offset.y >= 1:  # line 0 is the header
            self.select_row(self.scroll_offset.y + offset.y - 1)

    @staticmethod
    def _cells_of(agent: AgentView, head: int, now: float) -> list[Text]:
        role = agent.role if not agent.skill or agent.skill == agent.role else (
            f"{agent.role}/{agent.skill}")
        age = "-" if not agent.last_ts else f"{max(now - agent.last_ts, 0):.0f}s"
        return [
            literal(agent.name),
            literal(agent.state, STATE_STYLES.get(agent.state, "white")),
            Text("-" if agent.state == "done" else str(max(head - agent.cursor, 0))),
            Text(age),
            literal(role),
            literal(agent.phase),
            literal(agent.cursor),
            literal(agent.thinking),
        ]


class InboxView(Static):
    """The selected agent's messages, with the cursor line between acked and pending."""

    _lines = 0

    def show(self, agent: str | None, events: list[Event], cursor: int) -> None:
        """Render ``agent``'s inbox."""
        if agent is None:
            self.update(Text("select an agent (1, then the arrows)", "dim"))
            self._lines = 1
            return
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(f"inbox of {printable(agent)}  (cursor {cursor})\n", "bold")
        acked = [e for e in events if e.offset <= cursor][-1:]
        pending = [e for e in events if e.offset > cursor]
        for event in acked:
            out.append_text(row_text(event))
            out.append("\n")
        out.append(f"──── cursor {cursor}: acked above, {len(pending)} pending below ────\n",
                   "bold yellow")
        for event in pending[:20]:
            out.append_text(row_text(event))
            out.append("\n")
        # A layout pass only when the pane's height changes.
        lines = len(acked) + min(len(pending), 20) + 2
        self.update(out, layout=lines != self._lines)
        self._lines = lines


class StatusLine(Static):
    """The header: database, phase, plan progress, gates, follow and pause state."""

    def show(self, location: str, ledger: Ledger, head: int, *, following: bool,
             filter_text: str, caught_up: bool) -> None:
        """Render the status line."""
        done, total = ledger.progress()
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" sisyphus ", "bold reverse")
        line.append(f" phase: {printable(ledger.phase)} ", "bold")
        line.append(f" steps {done}/{total} ")
        for gate in ledger.gates.values():
            mark, style = ("?", "dim") if gate.passed is None else (
                ("✓", "green") if gate.passed else ("✗", "bold red"))
            if gate.human and gate.passed is None:
                mark, style = "⏸", "yellow"
            line.append(f" {printable(gate.name)} {mark}", style)
        line.append(f"  head {head}", "dim")
        if not caught_up:
            line.append(f" (reading log: {ledger.offset})", "yellow")
        if ledger.paused:
            line.append("  PAUSED", "bold yellow")
        if ledger.skipped_count:
            # Events no fold could use: skipped, and said (`sisyphus doctor` lists them).
            line.append(f"  ⚠ {ledger.skipped_count} skipped", "bold red")
        line.append("  following" if following else "  scrolled", "dim")
        if filter_text:
            line.append(f"  filter: {printable(filter_text)}", "cyan")
        # The path last: on a narrow terminal it is what gets cut (from the left, so the
        # file's name stays), not the state.
        path = printable(location)
        name = printable(location.rsplit("/", 1)[-1])
        room = self.size.width - line.cell_len - 2
        if 0 < room < len(name) + 2:
            path = name  # at least the file's name, cut at the edge if it must be
        elif 0 < room < len(path):
            path = "…" + path[len(path) - room + 1:]
        line.append(f"  {path}", "dim")
        # One line, always: no layout pass for a new status.
        self.update(line, layout=False)


class LedgerView(ScrollView, can_focus=True):
    """The ledger projection, rendered as Markdown.

    Rendered off the event loop (a thread worker) into lines that a scroll view draws
    only where visible: one widget, whatever the ledger holds. (Textual's Markdown
    widget mounts a widget per block, and under load every layout pass of the screen
    arranged them all: half of the loop's time in the benchmark.)"""

    # A stable gutter: the text is rendered for the width left beside the scrollbar,
    # whether or not the ledger is tall enough to need one yet.
    DEFAULT_CSS = "LedgerView { overflow-x: hidden; scrollbar-gutter: stable; }"

    def __init__(self, source: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self._lines: list[Strip] = []
        self._width = 0  # the width the shown lines were rendered for
        self._requested: tuple[str, int] | None = None  # the last render started

    def show(self, source: str) -> None:
        """Render ``source`` (Markdown) and show it once rendered."""
        self.source = source
        self._render_if_stale()

    # Mounted, resized, or shown again (hidden, one pane at a time on a narrow terminal,
    # it has no width and renders nothing): render what is not rendered yet.
    def on_mount(self) -> None:
        self._render_if_stale()

    def on_resize(self, event: events.Resize) -> None:
        self._render_if_stale()

    def on_show(self) -> None:
        self._render_if_stale()

    def _render_if_stale(self) -> None:
        width = self.scrollable_content_region.width
        if width > 0 and (self.source, width) != self._requested:
            self._requested = (self.source, width)
            self._render_markdown(self.source, width)

    @work(thread=True, group="ledger-render", exit_on_error=False)
    def _render_markdown(self, source: str, width: int) -> None:
        console = Console(width=width, color_system="truecolor", force_terminal=True,
                          highlight=False, emoji=False)
        lines = console.render_lines(Markdown(source), console.options, pad=True)
        # Every segment gets a style (Rich pads with unstyled ones): Textual's colour
        # filters (NO_COLOR) read the style of each segment.
        plain = Style()
        strips = [Strip([Segment(text, style or plain, control)
                         for text, style, control in line], width) for line in lines]
        self.app.call_from_thread(self._rendered, strips, source, width)

    def _rendered(self, strips: list[Strip], source: str, width: int) -> None:
        if (source, width) != self._requested:
            return  # a newer source or width is being rendered
        self._lines, self._width = strips, width
        self.virtual_size = Size(width, len(strips))
        self.refresh()

    @property
    def shown_text(self) -> str:
        """The rendered lines as plain text (what the pane shows when scrolled through)."""
        return "\n".join(strip.text.rstrip() for strip in self._lines)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.size.width
        if row >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        return self._lines[row].crop_extend(scroll_x, scroll_x + width, self.rich_style)
