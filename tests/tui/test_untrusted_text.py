"""Text from the log is never markup and never a control sequence in the app: names,
states, gates and reasons that look like Rich/Textual markup are shown as typed in
every notification, form and pane (the app keeps running), and every character of
every row is printable. Driven by Pilot on a real database written as another writer
(or an older sisyphus) may have, past the payload models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Input, Label, Select, Static
from textual.widgets._toast import Toast

from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.modals import ConfirmScreen, InjectForm
from sisyphus_tui.tui.widgets.event_stream import row_text
from sisyphus_tui.tui.widgets.panes import AgentsTable, StatusLine
from tests.tui.conftest import NOW
from tests.tui.fixtures import T0, insert_events
from tests.tui.test_app import controls, settle, until

MARKUP = ("x[/]", "[@click=app.quit]x[/]", "F... [100%]")
LINK = "[@click=app.quit]x[/]"  # sorts first among the agents: the selected row
CLOSER = "a[/]"  # the next one


def shown_toasts(app: Any) -> list[str]:
    """The text of every toast on the screen, as drawn."""
    return [toast.render().plain for toast in app.screen.query(Toast)]


def notified(app: Any) -> list[str]:
    """The messages of the app's notifications; none of them is markup."""
    notes = list(app._notifications)
    assert not any(n.markup for n in notes)
    return [n.message for n in notes]


def hostile_names(db: Path) -> None:
    """Agents and a human gate whose names are markup: spawned (as an older version let
    through), so the ledger passes requests about them on to the store's checks, and
    registered, so mail reaches them."""
    insert_events(db, [
        ("GATE_RESULT", "human", None, {"gate": "signoff", "passed": True}),  # (the fixture's)
        ("AGENT_SPAWNED", "kernel", None, {"agent": CLOSER, "role": "executor"}),
        ("AGENT_REGISTERED", CLOSER, None, {"agent": CLOSER, "role": "executor"}),
        ("STATUS_UPDATE", CLOSER, None, {"agent": CLOSER, "state": "x[/]"}),
        ("AGENT_SPAWNED", "kernel", None, {"agent": LINK, "role": "executor"}),
        ("AGENT_REGISTERED", LINK, None, {"agent": LINK, "role": "executor"}),
    ])


async def test_keys_on_agents_and_gates_named_in_markup(log: Path) -> None:
    db = log
    hostile_names(db)
    async with SisyphusApp(db=db, clock=lambda: NOW).run_test(
            size=(120, 40), notifications=True) as pilot:
        app = pilot.app
        await settle(pilot)
        await pilot.press("1")
        assert app.query_one(AgentsTable).selected == LINK
        # The wipe is asked first, the name as typed in the question.
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = " ".join(str(label.render()) for label in app.screen.query(Label))
        assert f"Wipe {LINK}'s context?" in question
        await pilot.press("y")
        await until(pilot, lambda: len(notified(app)) == 1)
        # The store refuses the wipe (the name breaks the agent-name rule); the ledger
        # refuses the resume (the agent is not wiped: its state is markup too). Each
        # notification names its agent as typed. (A gate's name follows the spec's
        # model, which has no room for markup: no gate waits.)
        await pilot.press("down", "r", "a")
        await until(pilot, lambda: len(notified(app)) == 3)
        wipe, resume, approve = notified(app)
        assert wipe.startswith("invalid CONTROL payload: agent: invalid agent name")
        assert f"'{LINK}'" in wipe
        assert resume == f"{CLOSER} is not wiped (it is x[/]): nothing to resume"
        assert approve == "no human gate is waiting in this run"
        assert controls(db) == []  # nothing was sent
        await settle(pilot)
        assert sorted(shown_toasts(app)) == sorted(notified(app))

        # The inject form lists the agents, and selects the one selected, as typed.
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InjectForm))
        form = app.screen
        assert isinstance(form, InjectForm)
        recipient = form.query_one("#to", Select)
        assert recipient.value == CLOSER
        assert CLOSER in str(recipient.query_one("SelectCurrent #label", Static).render())
        form.query_one("#text", Input).value = "hi"
        await pilot.pause()
        form.submit()
        await until(pilot, lambda: any(n.startswith(f"message sent to {CLOSER} (offset ")
                                       for n in notified(app)))
        assert app.is_running


async def test_the_run_outcome_notification_shows_its_reason_as_typed(
        log: Path, tmp_path: Path) -> None:
    """A real swarm hosted by the app, on a run that was blocked with a reason that is
    markup (pytest's own output holds '[100%]')."""
    db, workspace = log, tmp_path / "ws"
    workspace.mkdir()
    reason = "gate tests: " + " ".join(MARKUP)
    insert_events(db, [("PHASE", "kernel", None, {"phase": "blocked", "reason": reason})])
    async with await open_store(db) as store:
        app = SisyphusApp(store, workspace=workspace, host=Swarm(store, workspace),
                          clock=lambda: NOW)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: bool(notified(app)))
            assert notified(app) == [f"the run is blocked: {reason}"]
            await settle(pilot)
            assert shown_toasts(app) == [f"the run is blocked: {reason}"]
            assert app.is_running


async def test_every_field_is_drawn_printable(log: Path) -> None:
    """The agents table, the status line and the stream rows hold no control character,
    whatever the fields they show hold."""
    db = log
    esc = "\x1b]2;pwned\x07\ud800\u202e"
    column = "\x1b]2;pwned\x07\u202e"  # (SQLite's text columns cannot hold a surrogate)
    insert_events(db, [
        ("x." + column, column, column, {"text": esc}),
        ("AGENT_SPAWNED", "swarm", None, {"agent": "thinker", "role": esc, "skill": esc,
                                          "thinking": esc}),
        # (Nothing hosts this log, so a spawned agent reads "no host": a state from the
        # log is shown for an agent only registered, as `sisyphus agent` runs one.)
        ("STATUS_UPDATE", "thinker", None, {"agent": "thinker", "state": "working",
                                            "phase": esc, "detail": esc}),
        ("AGENT_REGISTERED", "visitor", None, {"agent": "visitor", "role": "researcher"}),
        ("STATUS_UPDATE", "visitor", None, {"agent": "visitor", "state": esc}),
        # (A phase outside the six is skipped by the fold; its reason is free text.)
        ("PHASE", "kernel", None, {"phase": "plan", "reason": esc}),
    ], ts=T0 + 25)
    async with SisyphusApp(db=db, clock=lambda: NOW).run_test(size=(200, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        table = app.query_one(AgentsTable)
        thinker, visitor = table.shown("thinker"), table.shown("visitor")
        assert thinker is not None and visitor is not None
        escaped = r"\x1b]2;pwned\x07\ud800\u202e"
        # The action, role (= skill), phase and thinking; the other agent's state.
        assert [thinker.action, *thinker.extra] == [escaped, escaped, escaped, "0", escaped]
        assert visitor.state == escaped
        cells = [field for view in (thinker, visitor)
                 for field in (view.name, view.state, view.action, *view.extra)]
        drawn = [table.render_line(y).text for y in range(table.size.height)]
        # Drawn as escapes: the thinker's action line whole, the visitor's state cut to
        # its column (a state is capped: free text must not push the others' columns off).
        assert sum(r"\x1b]2;pwned\x07" in line for line in drawn) == 1, drawn
        assert sum(r"\x1b]2;" in line for line in drawn) == 2, drawn
        status = str(app.query_one(StatusLine).render())
        assert "phase: plan" in status
        async with await open_store(db, create=False) as store:
            events = (await store.read(0, 100)).events
        for text in [status, *(row_text(e).plain for e in events), *cells, *drawn]:
            assert text.isprintable(), repr(text)
