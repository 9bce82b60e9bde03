"""Text from the log is never markup and never a control sequence in the app: names,
states, gates and reasons that look like Rich/Textual markup are shown as typed in
every notification, form and pane (the app keeps running), and every character of
every row is printable. Driven by Pilot on a real database written as another writer
(or an older sisyphus) may have, past the payload models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Input, Select, Static
from textual.widgets._toast import Toast

from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.modals import InjectForm
from sisyphus_tui.tui.widgets.event_stream import row_text
from sisyphus_tui.tui.widgets.panes import AgentsTable, StatusLine
from tests.tui.conftest import NOW
from tests.tui.fixtures import T0, insert_events
from tests.tui.test_app import settle, until

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
    """Agents and a human gate whose names are markup (registered, so mail reaches them)."""
    insert_events(db, [
        ("GATE_RESULT", "human", None, {"gate": "signoff", "passed": True}),  # (the fixture's)
        ("AGENT_REGISTERED", CLOSER, None, {"agent": CLOSER, "role": "executor"}),
        ("STATUS_UPDATE", CLOSER, None, {"agent": CLOSER, "state": "x[/]"}),
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
        await pilot.press("w", "down", "r", "a")
        await until(pilot, lambda: len(notified(app)) == 3)
        # Wipe and resume are refused (the names break the agent-name rule); each
        # notification names its agent as typed. (A gate's name follows the spec's
        # model, which has no room for markup: no gate waits.)
        wipe, resume, approve = notified(app)
        assert wipe.startswith("invalid CONTROL payload: agent: invalid agent name")
        assert f"'{LINK}'" in wipe and f"'{CLOSER}'" in resume
        assert approve == "no human gate is waiting in this run"
        await settle(pilot)
        assert sorted(shown_toasts(app)) == sorted(notified(app))

        # The inject form lists the agents, and selects the one selected, as typed.
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InjectForm))
        recipient = app.screen.query_one("#to", Select)
        assert recipient.value == CLOSER
        assert CLOSER in str(recipient.query_one("SelectCurrent #label", Static).render())
        app.screen.query_one("#text", Input).value = "hi"
        await pilot.pause()
        app.screen.submit()
        await until(pilot, lambda: f"message sent to {CLOSER}" in notified(app))
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
        ("STATUS_UPDATE", "thinker", None, {"agent": "thinker", "state": esc, "phase": esc}),
        # (A phase outside the six is skipped by the fold; its reason is free text.)
        ("PHASE", "kernel", None, {"phase": "plan", "reason": esc}),
    ], ts=T0 + 25)
    async with SisyphusApp(db=db, clock=lambda: NOW).run_test(size=(200, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        table = app.query_one(AgentsTable)
        cells = table._cells[table.rows.index("thinker")]
        assert [c.plain for c in cells if "x1b" in c.plain] == [
            r"\x1b]2;pwned\x07\ud800\u202e"] * 4  # state, role (= skill), phase, thinking
        status = str(app.query_one(StatusLine).render())
        assert "phase: plan" in status
        async with await open_store(db, create=False) as store:
            events = (await store.read(0, 100)).events
        for text in [status, *(row_text(e).plain for e in events),
                     *(c.plain for c in cells)]:
            assert text.isprintable(), repr(text)
