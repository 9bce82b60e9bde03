"""An agent's transcript, over the whole screen: ``escape`` goes back."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event, EventStore
from sisyphus_tui.tui.widgets.transcript import TranscriptView


class TranscriptScreen(Screen[None]):
    """What one agent was asked, said, thought and did, live (widgets/transcript.py)."""

    BINDINGS = [Binding("escape,q", "dismiss", "Back")]
    DEFAULT_CSS = """
    TranscriptScreen { layout: vertical; }
    TranscriptScreen #transcript-title { height: 1; background: $panel; padding: 0 1; }
    TranscriptScreen TranscriptView { height: 1fr; border: round $accent; }
    TranscriptScreen #transcript-hint { height: 1; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, store: EventStore, agent: str, head: int) -> None:
        super().__init__()
        self.agent = agent
        self.view = TranscriptView(store, agent, head)

    def compose(self) -> ComposeResult:
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(" transcript ", "bold reverse")
        title.append(f" {printable(self.agent)}", "bold")
        yield Static(title, id="transcript-title")
        self.view.border_title = printable(self.agent)
        yield self.view
        yield Static(Text("escape: back  ↑↓ j k: event  pgup pgdn: page  g G: first, "
                          "last  enter: fold, unfold", no_wrap=True, overflow="ellipsis"),
                     id="transcript-hint")

    def on_mount(self) -> None:
        self.view.focus()

    def grow(self, head: int, new_events: list[Event]) -> None:
        """Events committed since the last call: the agent's join the transcript."""
        self.view.grow(head, new_events)
