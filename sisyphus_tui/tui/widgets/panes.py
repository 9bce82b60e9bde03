"""The agents table, the selected agent's inbox and the status line."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import DataTable, Static

from sisyphus_tui.ledger import AgentView, Ledger
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event
from sisyphus_tui.tui.widgets.event_stream import row_text

STATE_STYLES = {
    "working": "bold green", "idle": "white", "waiting": "yellow", "stale": "bold red",
    "wiped": "bold red", "blocked": "bold red", "done": "dim", "failed": "bold red",
}
COLUMNS = ("agent", "state", "lag", "active", "role", "phase", "cursor", "thinking")
MAILBOXES = ("swarm", "human")


class AgentsTable(DataTable[Text]):
    """Every agent: name, role/skill, state, cursor and lag, last activity, thinking."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        for column in COLUMNS:
            self.add_column(column, key=column)

    @property
    def selected(self) -> str | None:
        """The agent on the cursor row."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def show(self, ledger: Ledger, head: int, now: float | None = None) -> None:
        """Bring the rows up to date (same order: by name; the selection is kept)."""
        now = time.time() if now is None else now
        selected = self.selected
        agents = [a for a in sorted(ledger.agents.values(), key=lambda a: a.name)
                  if a.name not in MAILBOXES]
        wanted = [a.name for a in agents]
        current = [str(k.value) for k in self.rows]
        if current != wanted:
            self.clear()
            for agent in agents:
                self.add_row(*self._cells(agent, head, now), key=agent.name)
            if selected in wanted:
                self.move_cursor(row=wanted.index(selected))
            return
        for agent in agents:
            for column, cell in zip(COLUMNS, self._cells(agent, head, now), strict=True):
                self.update_cell(agent.name, column, cell)

    @staticmethod
    def _cells(agent: AgentView, head: int, now: float) -> list[Text]:
        role = agent.role if not agent.skill or agent.skill == agent.role else (
            f"{agent.role}/{agent.skill}")
        age = "-" if not agent.last_ts else f"{max(now - agent.last_ts, 0):.0f}s"
        return [
            Text(printable(agent.name)),
            Text(agent.state, STATE_STYLES.get(agent.state, "white")),
            Text("-" if agent.state == "done" else str(max(head - agent.cursor, 0))),
            Text(age),
            Text(printable(role)),
            Text(printable(agent.phase)),
            Text(str(agent.cursor)),
            Text(agent.thinking),
        ]


class InboxView(Static):
    """The selected agent's messages, with the cursor line between acked and pending."""

    def show(self, agent: str | None, events: list[Event], cursor: int) -> None:
        """Render ``agent``'s inbox."""
        if agent is None:
            self.update(Text("select an agent (1, then the arrows)", "dim"))
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
        self.update(out)


class StatusLine(Static):
    """The header: database, phase, plan progress, gates, follow and pause state."""

    def show(self, location: str, ledger: Ledger, head: int, *, following: bool,
             filter_text: str, caught_up: bool) -> None:
        """Render the status line."""
        done, total = ledger.progress()
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" sisyphus ", "bold reverse")
        line.append(f" phase: {ledger.phase} ", "bold")
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
        line.append("  following" if following else "  scrolled", "dim")
        if filter_text:
            line.append(f"  filter: {printable(filter_text)}", "cyan")
        # The path last: on a narrow terminal it is what gets cut, not the state.
        line.append(f"  {printable(location)}", "dim")
        # One line, always: no layout pass for a new status.
        self.update(line, layout=False)
