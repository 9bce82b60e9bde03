"""One event's payload: a header (offset, type, actor → recipient, key, its local time),
then its fields pretty-printed, text shown as it was written (newlines as newlines,
control characters as escapes, markup never parsed); ``r`` shows the raw JSON of the
whole event instead."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sisyphus_tui.safe_text import printable, printable_lines
from sisyphus_tui.stream.base import Event
from sisyphus_tui.timefmt import local_time

INDENT = "  "


def header(event: Event) -> Text:
    """Offset, type, actor → recipient, key and time, one field a line."""
    text = Text()
    text.append(f"@{event.offset} ", "bold")
    text.append(printable(event.type), "bold cyan")
    text.append(f"  {printable(event.actor or '-')}")
    if event.to:
        text.append(f" → {printable(event.to)}")
    text.append(f"\n{local_time(event.ts)}", "dim")
    if event.key:
        text.append("\nkey ", "dim")
        text.append(printable(event.key))
    return text


def _value(value: Any, indent: str) -> Text:
    """A field's value: text as itself (several lines indented under the field's name),
    anything else as indented JSON."""
    if isinstance(value, str):
        if "\n" not in value:
            return Text(" " + printable(value))
        lines = printable_lines(value).split("\n")
        return Text("\n" + "\n".join(indent + INDENT + line for line in lines))
    if isinstance(value, dict) and value:
        out = Text()
        for key, item in value.items():
            out.append(f"\n{indent}{INDENT}{printable(str(key))}:", "bold")
            out.append_text(_value(item, indent + INDENT))
        return out
    body = json.dumps(value, indent=2, ensure_ascii=False)
    if "\n" not in body:
        return Text(" " + printable(body))
    return Text("\n" + "\n".join(indent + INDENT + printable(line)
                                 for line in body.split("\n")))


def pretty(payload: dict[str, Any]) -> Text:
    """The payload, a field a line (``name: value``); empty fields left out."""
    out = Text()
    for key, value in payload.items():
        if value is None or value == {} or value == []:
            continue
        if out:
            out.append("\n")
        out.append(f"{printable(str(key))}:", "bold")
        out.append_text(_value(value, ""))
    return out or Text("(an empty payload)", "dim")


def raw(event: Event) -> Text:
    """The whole event as the log holds it, as indented JSON."""
    return Text(printable_lines(json.dumps(event.as_dict(), indent=2, ensure_ascii=False)))


class EventScreen(ModalScreen[None]):
    """One event: its header and payload, or (``r``) its raw JSON."""

    BINDINGS = [
        Binding("escape,q,enter", "dismiss", "Close"),
        Binding("r", "toggle_raw", "Raw JSON"),
    ]

    DEFAULT_CSS = """
    EventScreen { align: center middle; }
    EventScreen #event-view {
        width: 90%; max-width: 110; height: 90%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    EventScreen #event-header { height: auto; margin-bottom: 1; }
    EventScreen #event-scroll { height: 1fr; }
    EventScreen #event-body { height: auto; }
    EventScreen #event-hint { height: 1; color: $text-muted; }
    """

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event
        self.showing_raw = False

    def compose(self) -> ComposeResult:
        with Vertical(id="event-view"):
            yield Static(header(self.event), id="event-header")
            with VerticalScroll(id="event-scroll"):
                yield Static(pretty(self.event.payload), id="event-body")
            yield Static(self._hint(), id="event-hint")

    def on_mount(self) -> None:
        self.query_one("#event-scroll").focus()  # the arrows scroll a long payload

    def _hint(self) -> Text:
        return Text("r: the payload" if self.showing_raw else "r: raw JSON", "dim") + \
            Text("  ↑↓: scroll  escape: close", "dim")

    def action_toggle_raw(self) -> None:
        """Show the raw JSON of the whole event, or the payload again."""
        self.showing_raw = not self.showing_raw
        self.query_one("#event-body", Static).update(
            raw(self.event) if self.showing_raw else pretty(self.event.payload))
        self.query_one("#event-hint", Static).update(self._hint())
        self.query_one("#event-scroll", VerticalScroll).scroll_home(animate=False)

    @property
    def shown_text(self) -> str:
        """What the screen shows now, as plain text (header and body)."""
        body = raw(self.event) if self.showing_raw else pretty(self.event.payload)
        return header(self.event).plain + "\n" + body.plain
