"""Modal screens: the help screen, a yes/no question, and the spawn and inject forms;
each fits an 80x24 terminal (what is taller scrolls). An event's payload is
screens/event.py.

Forms validate in place: bad input is shown in the form, never raised."""

from __future__ import annotations

from typing import Any, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from sisyphus_tui.events import AGENT_NAME
from sisyphus_tui.tui.literal import literal

T = TypeVar("T")


class HelpScreen(ModalScreen[None]):
    """Every key, with what it does; a row without a key is a heading. Scrolls (j/k,
    the arrows) where the terminal is shorter than the list."""

    BINDINGS = [
        Binding("escape,q,f1,question_mark", "dismiss", "Close"),
        Binding("j", "scroll(1)", "Down", show=False),
        Binding("k", "scroll(-1)", "Up", show=False),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("sisyphus: keys", "bold")
        text.append("  (escape closes)\n", "dim")
        for key, description in self.keys:
            if not key:
                text.append(f"\n{description}\n", "bold")
                continue
            text.append(f"{key:<10}", "bold cyan")
            text.append(f"{description}\n")
        text.rstrip()
        with VerticalScroll(id="help"):
            yield Static(text)

    def on_mount(self) -> None:
        self.query_one("#help").focus()  # the arrows scroll it

    def action_scroll(self, rows: int) -> None:
        """Scroll the list by ``rows``."""
        self.query_one("#help", VerticalScroll).scroll_relative(y=rows, animate=False)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question before something that cannot be undone: y or enter says yes,
    n or escape says no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            # Names in the question come from the log: Text, never markup.
            yield Label(literal(self.question), classes="title")
            if self.detail:
                yield Label(literal(self.detail), classes="detail")
            with Horizontal(classes="buttons"):
                for button in (Button("Yes (y)", variant="warning", id="yes"),
                               Button("No (n)", id="no")):
                    # For the mouse only: a focused button would take enter for itself.
                    button.can_focus = False
                    yield button

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


class Form(ModalScreen[T]):
    """A form: Submit (or enter in a field) checks it, Cancel (or escape) closes it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.action_cancel()
        else:
            self.submit()

    def on_input_submitted(self) -> None:
        self.submit()

    def submit(self) -> None:
        """Check the form; dismiss with its result, or show what is wrong."""
        raise NotImplementedError

    def action_cancel(self) -> None:
        """Close without doing anything."""
        self.dismiss(None)


class SpawnForm(Form[dict[str, Any] | None]):
    """Spawn an agent by skill: skill, name, prompt, background, thinking."""

    def __init__(self, skills: list[str], taken: set[str]) -> None:
        super().__init__()
        self.skills = skills
        self.taken = taken

    def compose(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Label("Spawn an agent", classes="title")
            # Option prompts given as strings are parsed as markup: Text, always.
            yield Select([(literal(s), s) for s in self.skills], prompt="skill", id="skill")
            yield Input(placeholder="name (letters, digits, _ . @ -)", id="name")
            yield Input(placeholder="prompt: what to do", id="prompt")
            # Side by side: the whole form, buttons included, fits an 80x24 terminal.
            with Horizontal(classes="row"):
                yield Checkbox("in the background", value=True, id="background")
                yield Select([(t, t) for t in ("off", "think", "ultrathink")],
                             prompt="thinking", id="thinking")
            yield Label("", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Spawn", variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def submit(self) -> None:
        """Check the form; dismiss with the request, or show what is wrong."""
        skill = self.query_one("#skill", Select).value
        name = self.query_one("#name", Input).value.strip()
        prompt = self.query_one("#prompt", Input).value
        thinking = self.query_one("#thinking", Select).value
        error = self.query_one("#error", Label)
        if skill is Select.NULL:
            error.update("choose a skill")
        elif not AGENT_NAME.fullmatch(name):
            error.update("the name must be 1-64 letters, digits or _ . @ -")
        elif name in self.taken:
            error.update(literal(f"an agent called {name!r} exists already"))
        else:
            self.dismiss({"skill": str(skill), "agent": name, "prompt": prompt,
                          "background": self.query_one("#background", Checkbox).value,
                          "thinking": None if thinking is Select.NULL else str(thinking)})


class InjectForm(Form[dict[str, str] | None]):
    """Inject a message: recipient and text."""

    def __init__(self, agents: list[str], selected: str | None) -> None:
        super().__init__()
        self.agents = agents
        self.selected = selected

    def compose(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Label("Inject a message", classes="title")
            yield Select([(literal(a), a) for a in self.agents], prompt="recipient", id="to",
                         value=self.selected if self.selected in self.agents else Select.NULL)
            yield Input(placeholder="the message", id="text")
            yield Label("", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Send", variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def submit(self) -> None:
        """Check the form; dismiss with the message, or show what is wrong."""
        to = self.query_one("#to", Select).value
        text = self.query_one("#text", Input).value
        error = self.query_one("#error", Label)
        if to is Select.NULL:
            error.update("choose a recipient")
        elif not text.strip():
            error.update("the message is empty")
        else:
            self.dismiss({"to": str(to), "text": text})
