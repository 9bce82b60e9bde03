"""The agents table, the selected agent's inbox, the status line and the ledger."""

from __future__ import annotations

import time
from typing import NamedTuple

from rich.cells import cell_len
from rich.console import Console
from rich.markdown import Markdown
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from sisyphus_tui.ledger import AgentView, Ledger
from sisyphus_tui.narrative import headline
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event
from sisyphus_tui.tui.widgets.event_stream import row_text
from sisyphus_tui.usage import tokens_text

# How long a wipe and then the resume that followed it stay on the agent's row: a wipe and
# its resume usually land in one frame, and a recovery nobody can see is no demo.
WIPED_SHOWN_S = 2.5
RESUMED_SHOWN_S = 4.0
# Clocks of two processes disagree a little: an event stamped just after ``now`` is recent.
CLOCK_SKEW_S = 2.0
# The states a recovery's few seconds are shown over; the others (failed, no host, ...)
# are news that a wipe's story must not hide.
RECOVERY_OVER = frozenset({"idle", "working", "wiped", "registered"})
# The states that need someone: sorted to the top and marked (``!``, seen without colours).
# An agent waiting for a permission comes before all of them: it is stopped mid-turn.
NEEDS_INPUT = "needs input"
ATTENTION = frozenset({"failed", "waiting", "stale", "blocked", "no host", "wiped",
                       NEEDS_INPUT, "stalled", "cancelled"})
STATE_STYLES = {
    "working": "bold green", "idle": "white", "waiting": "bold yellow", "stale": "bold red",
    "wiped": "bold magenta", "resumed": "bold cyan", "blocked": "bold red", "done": "dim",
    "failed": "bold red", "paused": "yellow", "no host": "bold red",
    NEEDS_INPUT: "bold yellow", "stalled": "bold red", "queued": "cyan",
    "cancelled": "bold magenta",
}
# The states whose turn is running (its clock ticks): the time on it is shown.
ON_TURN = frozenset({"working", NEEDS_INPUT, "stalled", "paused", "queued"})
MAILBOXES = ("swarm", "human")
# j/k/g/G beside the arrows, home and end, in every scrolling pane.
VI_SCROLL: list[Binding | tuple[str, str] | tuple[str, str, str]] = [
    Binding("k", "scroll_up", "Up", show=False),
    Binding("j", "scroll_down", "Down", show=False),
    Binding("g", "scroll_home", "First", show=False),
    Binding("G", "scroll_end", "Last", show=False),
]
HEADER = ("agent", "state", "inbox", "age")
EXTRA = ("role", "phase", "cursor", "thinking")  # shown when the pane has the room
GAP = 1
MARKERS = 2  # the selection's ▸ and the attention mark, before the name
ACTION_INDENT = 4
MIN_NAME = 6
# A state's column: as wide as the states shown, a free-text one (an agent's own
# STATUS_UPDATE) cut at FREE_STATE_MAX; sisyphus's own states whole (`needs input`).
FREE_STATE_MAX = 9
EXTRA_MIN_NAME = 16
# The action line: time on the turn, cost and tokens before the action, each while the
# action keeps this many cells (tokens go first, then the cost, then the time).
ACTION_MIN = 16


def age(seconds: float) -> str:
    """A short age: ``2s``, ``5m``, ``3h``, ``2d``."""
    s = int(max(seconds, 0))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def turn_time(seconds: float) -> str:
    """Time on a turn as a clock: ``0:05``, ``12:03``, ``1:02:05``."""
    s = int(max(seconds, 0))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def short_cost(usd: float, estimate: bool = False) -> str:
    """A cost in a few cells (``usage.cost_text`` has four decimals): ``$0.12``,
    ``$15.40``, ``$120``, and under a cent ``$0.0041`` (never a spend shown as $0.00);
    ``~`` before an estimate (priced from the config's table: the backend gave tokens,
    not cost)."""
    amount = f"${usd:.0f}" if usd >= 100 else (
        f"${usd:.2f}" if usd >= 0.01 or usd <= 0 else f"${usd:.4f}")
    return ("~" if estimate else "") + amount


def resumed_text(agent: AgentView) -> str:
    """``resumed from checkpoint @100 (2 events, 2 ms)``."""
    at = f" @{agent.resumed_from}" if agent.resumed_from is not None else ""
    events = f"{agent.reread} event" + ("" if agent.reread == 1 else "s")
    ms = f"{agent.resume_ms:.0f} ms" if agent.resume_ms >= 1 else "<1 ms"
    return f"resumed from checkpoint{at} ({events}, {ms})"


def recovery(agent: AgentView, now: float) -> tuple[str, str] | None:
    """The (state, action) a recent wipe or resume shows at ``now``, or None: ``wiped``
    for WIPED_SHOWN_S after the wipe, even if the resume came in the same frame, then
    the resume for RESUMED_SHOWN_S."""
    wiped, resumed = agent.wiped_ts, agent.resumed_ts
    if wiped is not None and -CLOCK_SKEW_S <= now - wiped < WIPED_SHOWN_S:
        return "wiped", "context wiped"
    if resumed is None or (wiped is not None and resumed < wiped):
        return None  # never resumed, or wiped again since
    start = resumed if wiped is None else max(resumed, wiped + WIPED_SHOWN_S)
    if -CLOCK_SKEW_S <= now - start < RESUMED_SHOWN_S:
        return "resumed", resumed_text(agent)
    return None


class AgentRow(NamedTuple):
    """What one agent's two lines show, as plain text (compared to redraw only changes)."""

    name: str
    state: str
    attention: bool
    pending: str
    age: str
    action: str
    extra: tuple[str, str, str, str]  # role, phase, cursor, thinking
    spend: tuple[str, str, str] = ("", "", "")  # time on the turn, cost, tokens in/out
    needs_input: bool = False


class AgentsTable(ScrollView, can_focus=True):
    """Every agent in two lines: its name, true state (paused, blocked, no host, a
    recovery as it happens), pending messages and age, then the time on its turn, what
    it spent and what it does now (dim). The agents waiting for a permission come first,
    then the others that need someone, marked ``!``; the selection follows its agent.
    Role, phase, cursor and thinking are shown when the pane is wide enough; tokens, the
    cost and the time on the turn while the action keeps room.

    A scroll view drawing lines it keeps rendered: under load the state and age of
    agents change on every refresh, and a DataTable re-rendered all of its cells
    through Rich for each change (a quarter of the event loop's time in the benchmark).
    Here a changed row is rendered once and only its lines are redrawn."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "move(-1000000)", "First", show=False),
        Binding("end,G", "move(1000000)", "Last", show=False),
        Binding("enter", "open", "Its transcript", show=False),
    ]
    COMPONENT_CLASSES = {"agents-table--header", "agents-table--cursor",
                         "agents-table--action"}
    DEFAULT_CSS = """
    AgentsTable { background: $surface; overflow-x: hidden; }
    AgentsTable > .agents-table--header { text-style: bold; background: $panel; }
    AgentsTable > .agents-table--action { text-style: dim; }
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

    class Opened(Message):
        """``enter`` on an agent: open its transcript."""

        def __init__(self, agent: str) -> None:
            super().__init__()
            self.agent = agent

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[str] = []  # the agents' names, in display order
        self.cursor_row = 0
        self._views: list[AgentRow] = []
        self._layout: tuple[int, ...] = ()  # the column widths the strips are drawn with
        self._spend_layout: tuple[int, ...] = ()  # ... and the action line's, before it
        self._strips: dict[tuple[int, bool], Strip] = {}  # (line, selected) -> strip
        self._actions: dict[str, tuple[str, str]] = {}  # name -> (detail, its headline)

    @property
    def selected(self) -> str | None:
        """The agent on the cursor row."""
        return self.rows[self.cursor_row] if self.rows else None

    def shown(self, agent: str) -> AgentRow | None:
        """What ``agent``'s row shows now (None: not in the table)."""
        return self._views[self.rows.index(agent)] if agent in self.rows else None

    def show(self, ledger: Ledger, head: int, now: float | None = None,
             hosted: bool | None = None) -> None:
        """Bring the rows up to date at ``now`` (the app's clock), the states as
        ``ledger.shown_state`` tells them (``hosted``: whether a host runs the swarm,
        None if unknown). ``head`` is the log's head: the rows show pending messages,
        not lag, so it is not used. Cheap when little changed: called on every tick."""
        now = time.time() if now is None else now
        selected = self.selected
        views = [self._row_of(agent, ledger, now, hosted)
                 for agent in ledger.agents.values() if agent.name not in MAILBOXES]
        views.sort(key=lambda v: (not v.needs_input, not v.attention, v.name))
        names = [v.name for v in views]
        layout, spend = self._layout_for(views), self._spend_for(views)
        if names != self.rows or layout != self._layout or spend != self._spend_layout:
            self.rows, self._views, self._layout = names, views, layout
            self._spend_layout = spend
            self._strips.clear()
            if selected in names:
                self.cursor_row = names.index(selected)
            self.cursor_row = max(0, min(self.cursor_row, len(names) - 1))
            self.virtual_size = Size(self.scrollable_content_region.width, 2 * len(names) + 1)
            self._scroll_into_view(self.cursor_row)
            self.refresh()
            if self.selected != selected:
                self.post_message(self.Highlighted())
            return
        for row, (old, new) in enumerate(zip(self._views, views, strict=True)):
            if old != new:
                self._views[row] = new
                # Only the line that changed: every age moves each second, the time on
                # a turn too, and each line is a Rich render.
                lines = [2 * row] if old[:5] + old[6:7] != new[:5] + new[6:7] else []
                if (old.action, old.spend) != (new.action, new.spend):
                    lines.append(2 * row + 1)
                for line in lines:
                    self._strips.pop((line, False), None)
                    self._strips.pop((line, True), None)
                self._refresh_lines(lines)

    def _row_of(self, agent: AgentView, ledger: Ledger, now: float,
                hosted: bool | None) -> AgentRow:
        state = ledger.shown_state(agent, hosted=hosted)
        memo = self._actions.get(agent.name)
        if memo is None or memo[0] != agent.detail:
            memo = self._actions[agent.name] = (agent.detail,
                                                printable(headline(agent.detail)))
        action = memo[1]
        # The order and the mark follow the true state: a row does not jump to the top
        # and back for the few seconds a recovery is shown. The kernel waits on its team
        # all run long: that needs nobody, unless what it waits for is a person.
        attention = state in ATTENTION and not (
            state == "waiting" and agent.role == "kernel" and not ledger.waiting_for_human())
        shown = recovery(agent, now) if state in RECOVERY_OVER else None
        if shown is not None:
            state, action = shown
        role = agent.role if not agent.skill or agent.skill == agent.role else (
            f"{agent.role}/{agent.skill}")
        return AgentRow(
            printable(agent.name), printable(state), attention,
            "-" if state == "done" else str(agent.pending),
            "-" if not agent.last_ts else age(now - agent.last_ts), action,
            (printable(role), printable(agent.phase), str(agent.cursor),
             printable(agent.thinking)),
            self._spend_of(agent, state, now), state == NEEDS_INPUT)

    @staticmethod
    def _spend_of(agent: AgentView, state: str, now: float) -> tuple[str, str, str]:
        """Time on the turn in progress, cost and tokens, as the action line shows them
        (empty: nothing to say)."""
        on_turn = turn_time(now - agent.turn_ts) if (
            agent.turn_ts is not None and state in ON_TURN) else ""
        spent = agent.cost_usd > 0 or agent.tokens_in > 0 or agent.tokens_out > 0
        cost = short_cost(agent.cost_usd, agent.cost_is_estimate) if spent else ""
        tokens = (f"{tokens_text(agent.tokens_in)}/{tokens_text(agent.tokens_out)} tok"
                  if agent.tokens_in or agent.tokens_out else "")
        return on_turn, cost, tokens

    def _spend_for(self, views: list[AgentRow]) -> tuple[int, ...]:
        """The widths of the action line's time, cost and tokens columns (0: left out),
        each kept while the action after them has ACTION_MIN cells."""
        room = self.scrollable_content_region.width - ACTION_INDENT
        widths = [max([0] + [cell_len(v.spend[i]) for v in views]) for i in range(3)]
        # Tokens go first, then the cost, then the time on the turn.
        for drop in (2, 1, 0):
            if room - sum(w + GAP for w in widths if w) >= ACTION_MIN:
                break
            widths[drop] = 0
        return tuple(widths)

    def _layout_for(self, views: list[AgentRow]) -> tuple[int, ...]:
        """The widths of name, state, inbox and age (and of the extra columns when they
        fit), for the pane's width: never wider than the pane."""
        width = self.scrollable_content_region.width
        # A state is free text (an agent's STATUS_UPDATE): one long one is cut, never
        # allowed to push every other agent's pending and age off the pane.
        state = max([len(HEADER[1])] + [
            cell_len(v.state) if v.state in STATE_STYLES else min(cell_len(v.state),
                                                                  FREE_STATE_MAX)
            for v in views])
        pending = max([len(HEADER[2])] + [len(v.pending) for v in views])
        ages = max([len(HEADER[3])] + [len(v.age) for v in views])
        longest = max([len(HEADER[0])] + [cell_len(v.name) for v in views])
        fixed = MARKERS + 3 * GAP + state + pending + ages
        extra = [max([len(title)] + [cell_len(v.extra[i]) for v in views])
                 for i, title in enumerate(EXTRA)]
        # The extra columns when the names keep room enough (cut if they must be).
        name = min(longest, width - fixed - sum(extra) - GAP * len(extra))
        if name >= min(longest, EXTRA_MIN_NAME):
            return (width, name, state, pending, ages, *extra)
        return (width, max(MIN_NAME, min(longest, width - fixed)), state, pending, ages)

    # -- drawing ------------------------------------------------------------------

    def _refresh_row(self, row: int) -> None:
        self._refresh_lines([2 * row, 2 * row + 1])

    def _refresh_lines(self, lines: list[int]) -> None:
        width = self.size.width
        for line in lines:
            y = line + 1 - self.scroll_offset.y  # below the header
            if 1 <= y < self.scrollable_content_region.height:
                self.refresh(Region(0, y, width, 1))

    def _scroll_into_view(self, row: int) -> None:
        top = self.scroll_offset.y
        visible = max(self.scrollable_content_region.height - 1, 2)  # minus the header
        if 2 * row < top:
            self.scroll_to(y=2 * row, animate=False, immediate=True)
        elif 2 * row + 2 > top + visible:
            self.scroll_to(y=2 * row + 2 - visible, animate=False, immediate=True)

    def _cells(self, texts: tuple[str, ...], styles: tuple[str, ...]) -> Text:
        """Columns laid out by ``self._layout``: text cut with an ellipsis, numbers right."""
        line = Text(no_wrap=True, end="")
        for i, width in enumerate(self._layout[1:]):  # the extra columns when they fit
            cell = Text(texts[i], styles[i])
            cell.truncate(width, overflow="ellipsis", pad=False)
            pad = " " * (width - cell.cell_len)
            if i in (2, 3):  # the inbox and the age: numbers, right-aligned
                line.append(pad)
                line.append_text(cell)
            else:
                line.append_text(cell)
                line.append(pad)
            line.append(" " * GAP)
        return line

    def _header(self) -> Text:
        line = Text(" " * MARKERS, no_wrap=True, end="")
        line.append_text(self._cells(HEADER + EXTRA, ("",) * 8))
        return line

    def _first_line(self, view: AgentRow, selected: bool) -> Text:
        line = Text("▸" if selected else " ", no_wrap=True, end="")
        style = STATE_STYLES.get(view.state, "")
        # The mark says it without colours too (NO_COLOR): this agent needs someone.
        line.append("!" if view.attention else " ", style if view.attention else "")
        line.append_text(self._cells((view.name, view.state, view.pending, view.age,
                                      *view.extra), ("bold", style) + ("",) * 6))
        return line

    def _action_line(self, view: AgentRow) -> Text:
        line = Text(" " * ACTION_INDENT, no_wrap=True, end="")
        for i, width in enumerate(self._spend_layout):
            if width:  # the time and the cost right-aligned (numbers), the tokens too
                line.append(view.spend[i].rjust(width) + " " * GAP)
        line.append(view.action)
        line.stylize(self.get_component_rich_style("agents-table--action"))
        line.truncate(self._layout[0], overflow="ellipsis", pad=False)
        return line

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            text = self._header()
            text.stylize(self.get_component_rich_style("agents-table--header"))
            return self._strip(text, width)
        line = self.scroll_offset.y + y - 1
        row = line // 2
        if row >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        selected = row == self.cursor_row
        key = (line, selected)
        strip = self._strips.get(key)
        if strip is None:
            view = self._views[row]
            text = self._first_line(view, selected) if line % 2 == 0 else \
                self._action_line(view)
            if selected:
                text.stylize(self.get_component_rich_style("agents-table--cursor"))
            strip = self._strips[key] = self._strip(text, width)
        return strip

    def _strip(self, text: Text, width: int) -> Strip:
        text.truncate(width, pad=True)
        return Strip(text.render(self.app.console)).crop_extend(0, width, self.rich_style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # focus and theme change the cursor's style

    def on_resize(self, event: events.Resize) -> None:
        layout, spend = self._layout_for(self._views), self._spend_for(self._views)
        if layout != self._layout or spend != self._spend_layout:
            self._layout, self._spend_layout = layout, spend
            self._strips.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, 2 * len(self.rows) + 1)
        self.refresh()

    # -- keys and mouse ---------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        """Move the selection."""
        self.select_row(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        """Move the selection by a screenful."""
        self.select_row(self.cursor_row + direction * max(
            (self.scrollable_content_region.height - 1) // 2, 1))

    def action_open(self) -> None:
        """Say which agent's transcript to open (``enter``)."""
        if self.selected is not None:
            self.post_message(self.Opened(self.selected))

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
            self.select_row((self.scroll_offset.y + offset.y - 1) // 2)


class InboxView(Static):
    """The selected agent's messages, with the cursor line between acked and pending."""

    _lines = 0

    def show(self, agent: str | None, events: list[Event], cursor: int) -> None:
        """Render ``agent``'s inbox."""
        if agent is None:
            self.update(Text("select an agent (1, then j/k)", "dim"))
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


class InboxPane(VerticalScroll):
    """The inbox's scroll container: the arrows and j/k/g/G scroll it when focused."""

    BINDINGS = list(VI_SCROLL)


class _Part(NamedTuple):
    """A piece of the status line: its text, a shorter one for a narrow terminal, and
    when it goes (None: never; the lower, the sooner)."""

    full: Text
    short: Text | None = None
    drop: int | None = None


SEPARATOR = "  "
PHASE_STYLES = {"blocked": "bold red", "done": "bold green", "failed": "bold red"}
OVER = frozenset({"done", "blocked", "failed"})  # phases after which nothing runs


def needing_input(ledger: Ledger) -> int:
    """How many agents wait for an answer to a permission request."""
    return sum(1 for agent in ledger.agents.values() if agent.asking)


class StatusLine(Static):
    """The header: phase, plan progress, PAUSED, a human gate waiting, the agents that
    need input, following or scrolled, the filter, skipped events; then the run's cost,
    the gates, the head and the path. The first are never lost at 80 columns (shortened
    if they must be); the path, the head, the gates and the cost go first. States are
    words and marks, readable without colours."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._parts: tuple[list[_Part], str] | None = None

    def show(self, location: str, ledger: Ledger, head: int, *, following: bool,
             filter_text: str, caught_up: bool, hosted: bool | None = None) -> None:
        """Render the status line (``hosted``: whether a host runs the swarm, None if
        unknown: ``no host`` is said only when known)."""
        parts = self._parts_of(ledger, head, following=following, filter_text=filter_text,
                               caught_up=caught_up, hosted=hosted)
        self._parts = (parts, location)
        self._draw()

    def on_resize(self, event: events.Resize) -> None:
        self._draw()  # what fits changed

    @property
    def shown_text(self) -> str:
        """The line as shown, plain."""
        return str(self.render())

    @staticmethod
    def _parts_of(ledger: Ledger, head: int, *, following: bool, filter_text: str,
                  caught_up: bool, hosted: bool | None) -> list[_Part]:
        done, total = ledger.progress()
        phase = printable(ledger.phase)
        style = PHASE_STYLES.get(ledger.phase, "bold")
        parts = [
            _Part(Text(" sisyphus ", "bold reverse"), drop=2),
            _Part(Text(f"phase: {phase}", style), Text(phase, style)),
            _Part(Text(f"steps {done}/{total}"), Text(f"{done}/{total}")),
        ]
        if hosted is False and ledger.phase not in OVER:
            parts.append(_Part(Text("⚠ no host", "bold red"), Text("no host", "bold red")))
        if ledger.paused:
            parts.append(_Part(Text("PAUSED", "bold yellow reverse")))
        waiting = ledger.waiting_for_human()
        for waiting_gate in waiting:
            name = printable(waiting_gate)
            parts.append(_Part(Text(f"⏸ {name} waits for you: a", "bold yellow"),
                               Text(f"⏸ {name}: a", "bold yellow")))
        asking = needing_input(ledger)
        if asking:
            parts.append(_Part(
                Text(f"? {asking} {'needs' if asking == 1 else 'need'} input: a",
                     "bold yellow"), Text(f"? {asking} input", "bold yellow")))
        if not caught_up:
            parts.append(_Part(Text(f"(reading log: {ledger.offset})", "yellow"),
                               Text("(reading)", "yellow")))
        if ledger.skipped_count:
            # Events no fold could use: skipped, and said (`sisyphus doctor` lists them).
            parts.append(_Part(Text(f"⚠ {ledger.skipped_count} skipped", "bold red"),
                               Text(f"⚠{ledger.skipped_count}", "bold red")))
        parts.append(_Part(Text("following", "dim") if following else
                           Text("scrolled", "bold yellow")))
        if filter_text:
            parts.append(_Part(Text(f"filter: {printable(filter_text)}", "cyan"),
                               Text(f"/{printable(filter_text)}", "cyan")))
        for gate in ledger.gates.values():
            if gate.name in waiting:
                continue
            mark, gate_style, drop = ("?", "dim", 4) if gate.passed is None else (
                ("✓", "green", 4) if gate.passed else ("✗", "bold red", 5))
            if gate.human and gate.passed is None:
                mark = "⏸"
            parts.append(_Part(Text(f"{printable(gate.name)} {mark}", gate_style), drop=drop))
        spent = ledger.spend().run
        if spent.spent:
            # (what the run costs is never dropped: the long forms are shortened first)
            parts.append(_Part(Text(short_cost(spent.cost_usd, spent.cost_is_estimate),
                                    "bold")))
        crossed = ledger.budget
        if crossed is not None:
            # Past 80% of a budget: said as long as it holds, not only in a toast.
            whose = f"{printable(str(crossed['agent']))}'s " if crossed.get("agent") else ""
            share = float(crossed["spent_usd"]) / float(crossed["limit_usd"])
            said = f"⚠ {whose}budget {share:.0%}" if crossed["level"] == "warn" else \
                f"⚠ {whose}budget spent"
            parts.append(_Part(Text(said, "bold yellow"), Text("⚠ budget", "bold yellow")))
        parts.append(_Part(Text(f"head {head}", "dim"), drop=3))
        return parts

    def _draw(self) -> None:
        if self._parts is None:
            return
        parts, location = self._parts
        width = self.size.width or 10_000  # not laid out yet: everything
        texts = [part.full for part in parts]
        kept = list(range(len(parts)))

        def length() -> int:
            return sum(texts[i].cell_len for i in kept) + len(SEPARATOR) * (len(kept) - 1)

        # Drop what may go, the least important first; then shorten, from the right.
        for rank in sorted({p.drop for p in parts if p.drop is not None}):
            if length() <= width:
                break
            kept = [i for i in kept if parts[i].drop != rank]
        for i in reversed(kept):
            if length() <= width:
                break
            short = parts[i].short
            if short is not None:
                texts[i] = short
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        for n, i in enumerate(kept):
            if n:
                line.append(SEPARATOR)
            line.append_text(texts[i])
        # The path last: what is left of the line, cut from the left (the file's name
        # stays), or nothing.
        path = printable(location)
        room = width - line.cell_len - len(SEPARATOR)
        if room >= min(len(path), 8):
            line.append(SEPARATOR)
            line.append(path if len(path) <= room else "…" + path[len(path) - room + 1:],
                        "dim")
        line.truncate(width, overflow="ellipsis")  # what still does not fit: the filter's end
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
    BINDINGS = list(VI_SCROLL)

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
