"""Every action of the app in one list, and the command palette's provider.

The list feeds the app's key bindings (and so the footer), the help screen and the
command palette: a key added here is bound, shown and offered everywhere at once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.command import Hit, Hits, Provider


@dataclass(frozen=True)
class Action:
    """One thing the user can do: its keys, the app action it runs, its footer label,
    its line in the help screen and its title in the command palette."""

    keys: str  # Textual's key names, comma-separated ("" : the palette only)
    action: str | None  # the app's action; None: a key a pane binds (help only)
    help: str
    label: str = ""  # the footer's label ("": not in the footer)
    title: str = ""  # the palette's title ("": not in the palette)
    display: str = ""  # the key as written for people ("" : the first key)
    narrow: bool = False  # in the footer of an 80-column terminal too
    priority: bool = False  # before the focused widget's own bindings

    @property
    def shown_key(self) -> str:
        """The key as the help screen and the palette write it."""
        return self.display or self.keys.split(",")[0] or "(palette)"


ACTIONS: tuple[Action, ...] = (
    Action("s", "spawn", "spawn an agent by skill (a form)", "spawn",
           "Spawn an agent by skill"),
    Action("i", "inject", "send a message to an agent (a form)", "inject",
           "Inject a message"),
    Action("w", "wipe", "wipe the selected agent's context (asks first)", "wipe",
           "Wipe the selected agent's context", narrow=True),
    Action("r", "resume", "resume the selected wiped or failed agent", "resume",
           "Resume the selected agent"),
    Action("x", "cancel", "cancel the selected agent's turn (asks first)", "cancel",
           "Cancel the selected agent's turn"),
    Action("R", "restart", "restart the selected agent's turn from its checkpoint "
           "(asks first)", "restart", "Restart the selected agent's turn"),
    Action("p", "pause", "pause the swarm, or let it run again", "pause",
           "Pause or unpause the swarm", narrow=True),
    Action("a", "approve", "answer what waits for you: an agent's permission request "
           "(a dialog, oldest first), else the human gate (approved)", "answer",
           "Answer a permission request or approve the waiting gate", narrow=True),
    Action("f", "follow", "follow the stream's tail on / off", "follow",
           "Follow the tail on or off"),
    Action("slash", "filter", "filter the stream: agent:NAME type:TYPE text", "filter",
           "Filter the event stream", display="/", narrow=True),
    Action("1", "pane(1)", "show agents (1), stream (2), ledger (3), inbox (4)", "panes",
           "Show the agents pane", display="1-4", narrow=True),
    Action("2", "pane(2)", "", title="Show the event stream"),
    Action("3", "pane(3)", "", title="Show the ledger"),
    Action("4", "pane(4)", "", title="Show the selected agent's inbox"),
    Action("tab", "next_pane", "the next pane (shift+tab: the previous one)", "next",
           "Next pane", narrow=True, priority=True),
    Action("shift+tab", "previous_pane", "", priority=True),
    Action("f1,question_mark", "help", "this help", "help", "Show every key",
           display="?", narrow=True),
    Action("q", "quit", "quit (an attached swarm keeps running)", "quit", "Quit",
           narrow=True),
    Action("", "stop", "stop the host: the run stops, run it again to carry on",
           title="Stop the swarm's host (asks first)"),
    Action("j,k", None, "down, up a row in the pane (the arrows too)", display="j k"),
    Action("g,G", None, "the pane's first, last row (home and end too)", display="g G"),
    Action("enter", None, "on an agent: its transcript; on an event: its payload"),
    Action("e", "agent_events", "the stream shows the selected agent's events only",
           title="Show the selected agent's events in the stream"),
    Action("", "transcript", "", title="Open the selected agent's transcript"),
    Action("ctrl+p", None, "the command palette: every action by name, with its key"),
)

NARROW_ACTIONS = frozenset(a.action for a in ACTIONS if a.narrow and a.action)
# Every key the list names (a pane binding one of these is not listed twice in the help).
KNOWN_KEYS = frozenset(k for a in ACTIONS for k in (a.keys.split(",") + [a.shown_key]) if k)


def bindings() -> list[BindingType]:
    """The app's key bindings, from ACTIONS."""
    return [Binding(a.keys, a.action, a.label or a.title or a.help, show=bool(a.label),
                    key_display=a.display or None, priority=a.priority)
            for a in ACTIONS if a.keys and a.action]


def help_rows() -> list[tuple[str, str]]:
    """(key, what it does) for the help screen, from ACTIONS."""
    return [(a.shown_key, a.help) for a in ACTIONS if a.help]


class SisyphusCommands(Provider):
    """Offers the app's actions in the command palette, each with its key; ahead of
    Textual's own commands, which score 0 when nothing is typed."""

    def _entries(self) -> list[tuple[str, str, str]]:
        return [(a.title, a.action, a.shown_key if a.keys else "")
                for a in ACTIONS if a.title and a.action]

    async def discover(self) -> Hits:
        entries = self._entries()
        for i, (title, action, key) in enumerate(entries):
            # Scored, not DiscoveryHits (all 0): first, and in this order.
            yield Hit(1.0 - i / (len(entries) + 1), Text(title),
                      partial(self.app.run_action, action), text=title,
                      help=f"key: {key}" if key else None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, key in self._entries():
            score = matcher.match(title)
            if score > 0:
                # Lifted into (0.5, 1]: the app's actions stay above the built-ins.
                yield Hit(0.5 + score / 2, matcher.highlight(title),
                          partial(self.app.run_action, action), text=title,
                          help=f"key: {key}" if key else None)
