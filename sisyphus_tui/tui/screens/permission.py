"""An agent's permission request, answered from the TUI: the tool, its input (pretty
JSON, shown literally), why the agent asks, when it times out, and the three answers:
allow once (1), allow always for this run (2), deny with a message (3 goes to the
message field, enter there denies; the Deny button denies at once). ``escape`` closes
it unanswered: the agent goes on waiting, and the banner says so.

The screen only says what the person chose (its result); the app appends the answer
(``permissions.answer``), so an answer another TUI or the CLI appended first is the one
that counts, and this screen is closed by the app when it arrives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sisyphus_tui.safe_text import printable, printable_lines
from sisyphus_tui.timefmt import clock
from sisyphus_tui.tui.literal import literal


@dataclass(frozen=True)
class PermissionAnswer:
    """What the person chose for a request."""

    decision: str  # allow | deny
    always: bool = False
    message: str = ""


def input_text(value: Any) -> Text:
    """A tool's input as indented JSON, its text literal (escapes, markup, newlines
    inside strings stay as JSON writes them)."""
    body = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return Text(printable_lines(body))


class PermissionScreen(ModalScreen[PermissionAnswer | None]):
    """One pending request of one agent, and its three answers."""

    BINDINGS = [
        Binding("1", "answer('allow', False)", "Allow once"),
        Binding("2", "answer('allow', True)", "Allow always"),
        Binding("3", "write_why", "Deny"),
        Binding("escape", "later", "Later"),
    ]
    DEFAULT_CSS = """
    PermissionScreen { align: center middle; }
    PermissionScreen #permission {
        width: 90%; max-width: 100; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    PermissionScreen .title { text-style: bold; }
    PermissionScreen .detail { color: $text-muted; }
    PermissionScreen #permission-reason { height: auto; max-height: 3; overflow: hidden; }
    PermissionScreen #permission-input {
        height: auto; max-height: 8; border: round $primary 40%;
    }
    PermissionScreen .buttons { height: auto; width: auto; }
    PermissionScreen Button { margin-right: 1; }
    """

    def __init__(self, agent: str, request: str, payload: dict[str, Any],
                 waiting: int = 1) -> None:
        super().__init__()
        self.agent = agent
        self.request = request
        self.payload = payload
        self.waiting = waiting  # requests pending in all (this one the oldest)

    def compose(self) -> ComposeResult:
        p = self.payload
        more = f"  (1 of {self.waiting} waiting)" if self.waiting > 1 else ""
        with Vertical(id="permission"):
            yield Label(literal(f"{self.agent} asks to use {p.get('tool')}{more}"),
                        classes="title")
            reason = str(p.get("reason") or "")
            if reason:
                yield Label(Text(printable_lines(reason)), id="permission-reason")
            with VerticalScroll(id="permission-input"):
                yield Static(input_text(p.get("input", {})), id="permission-json")
            yield Label(literal(self._timeout()), classes="detail")
            yield Input(placeholder="3: deny with a message (said to the agent), enter "
                        "denies", id="deny-message")
            with Horizontal(classes="buttons"):
                for label, id_ in (("Allow once (1)", "allow-once"),
                                   ("Allow always, this run (2)", "allow-always"),
                                   ("Deny (3)", "deny")):
                    button = Button(label, id=id_, variant="error" if id_ == "deny"
                                    else "success" if id_ == "allow-once" else "warning")
                    button.can_focus = False  # for the mouse: the keys answer
                    yield button
            yield Label(Text("escape: later (it goes on waiting)", "dim"))

    def _timeout(self) -> str:
        p = self.payload
        where = f"request {printable(self.request)}" + (
            f", on message @{p['message']}" if p.get("message") else "")
        timeout = p.get("timeout_s")
        ts = p.get("ts")
        if isinstance(timeout, int | float) and isinstance(ts, int | float):
            return (f"{where}; unanswered at {clock(ts + timeout)}, it is "
                    f"{'allowed' if p.get('on_timeout') == 'allow' else 'denied'}")
        return f"{where}; it waits until answered"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "deny":
            self.action_deny()
        else:
            self.action_answer("allow", event.button.id == "allow-always")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_deny()

    def action_answer(self, decision: str, always: bool) -> None:
        """Close with an allow (once, or always for the rest of the run)."""
        self.dismiss(PermissionAnswer(decision, always))

    def action_write_why(self) -> None:
        """To the message field: enter there denies with what was typed."""
        self.query_one("#deny-message", Input).focus()

    def action_deny(self) -> None:
        """Close with a deny and the message typed (it may be empty)."""
        self.dismiss(PermissionAnswer("deny", False,
                                      self.query_one("#deny-message", Input).value.strip()))

    def action_later(self) -> None:
        """Close unanswered (escape in the message field leaves the field first)."""
        field = self.query_one("#deny-message", Input)
        if field.has_focus:
            self.set_focus(None)
            return
        self.dismiss(None)
