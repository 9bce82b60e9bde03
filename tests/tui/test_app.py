"""The app driven by Pilot: every key and form (invalid input included), the stream's
filter and payload view, narrow and tiny terminals, hostile agent text, and an app
attached to a log another process writes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from textual.widgets import Input, Label, Select

from sisyphus_tui.stream import Event, open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.event import EventScreen
from sisyphus_tui.tui.screens.modals import ConfirmScreen, HelpScreen, InjectForm, SpawnForm
from sisyphus_tui.tui.widgets.event_stream import PAGE, EventStream, row_text
from sisyphus_tui.tui.widgets.panes import AgentsTable, InboxView, LedgerView, StatusLine
from tests.tui.conftest import NOW
from tests.tui.fixtures import HOSTILE, build_log, insert_events, story_offsets


def app_for(db: Path) -> SisyphusApp:
    return SisyphusApp(db=db, clock=lambda: NOW)


def controls(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT payload FROM events WHERE type = 'CONTROL' "
                        'ORDER BY "offset"').fetchall()
    conn.close()
    return [json.loads(p) for (p,) in rows]


def messages(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT \"to\", json_extract(payload, '$.text') FROM events "
                        "WHERE type = 'MESSAGE' AND actor = 'human'").fetchall()
    conn.close()
    return [(str(t), str(x)) for t, x in rows]


async def settle(pilot: Any) -> None:
    await pilot.pause(0.3)


async def until(pilot: Any, condition: Any, timeout_s: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds; fail if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "the condition never held"
        await pilot.pause(0.02)


def shown_offsets(stream: EventStream) -> list[int]:
    """The offsets of the stream's rows, oldest first."""
    return [stream.row_offset(row) for row in range(stream.total)]


def last_offset(stream: EventStream) -> int:
    """The offset of the stream's newest row (0: no rows)."""
    return stream.row_offset(stream.total - 1) if stream.total > 0 else 0


async def confirm(pilot: Any, *keys: str) -> None:
    """Press ``keys`` (a request asked first, as wipe is), then ``y`` to its question."""
    await pilot.press(*keys)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.press("y")
    await until(pilot, lambda: not isinstance(pilot.app.screen, ConfirmScreen))


async def test_the_screen_shows_the_swarm(log: Path) -> None:
    async with app_for(log).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        status = str(app.query_one(StatusLine).render())
        assert "phase: execute" in status and "steps 0/2" in status
        table = app.query_one(AgentsTable)
        assert table.rows == ["executor", "kernel", "planner",
                                                      "validator"]
        # The story's 14 rows; the 6 bookkeeping ones (registrations, the status update,
        # the checkpoint) are hidden until b, which shows all 20 (and b again hides them).
        stream = app.query_one(EventStream)
        await until(pilot, lambda: stream.scanned.is_set())
        assert shown_offsets(stream) == story_offsets() and len(story_offsets()) == 14
        assert stream.following and not stream.show_bookkeeping
        await pilot.press("b")
        await until(pilot, lambda: stream.total == 20)
        assert shown_offsets(stream) == list(range(1, 21)) and stream.following
        await pilot.press("b")
        await until(pilot, lambda: stream.scanned.is_set() and stream.total == 14)
        assert shown_offsets(stream) == story_offsets()
        ledger = app.query_one(LedgerView)
        assert "Refactor the SQL" in ledger.source
        # Rendered as Markdown (in a thread): the heading's '#' marks and the bold's
        # asterisks are gone. (The pane is 28 columns: the goal wraps, so words are
        # compared.)
        await until(pilot, lambda: "Goal: Refactor the SQL" in " ".join(
            ledger.shown_text.split()))
        assert "# Sisyphus ledger" not in ledger.shown_text
        assert "Sisyphus ledger" in ledger.shown_text


def notes(app: Any) -> list[str]:
    """What the app's notifications said, oldest first."""
    return [n.message for n in app._notifications]


async def test_keys_append_control_events(log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("1")  # the agents pane; the first row is the executor
        assert app.query_one(AgentsTable).selected == "executor"
        await confirm(pilot, "w")  # asked first: y
        await until(pilot, lambda: "wipe of executor requested (offset 21)" in notes(app))
        # Nothing hosts this log, so nothing wiped the executor: r is refused, and said,
        # and nothing is appended.
        await pilot.press("r")
        await until(pilot, lambda: any(n.startswith("executor is not wiped (")
                                       and n.endswith("nothing to resume") for n in notes(app)))
        async with await open_store(log, create=False) as store:
            assert await store.head() == 21
            # The swarm carries the wipe out: now there is something to resume.
            await store.append("CONTEXT_WIPED", {"agent": "executor", "lost": {}},
                               actor="swarm")
        await until(pilot, lambda: app.ledger.agents["executor"].state == "wiped")
        await pilot.press("r")
        await until(pilot, lambda: "resume of executor requested (offset 23)" in notes(app))
        await confirm(pilot, "down", "w")
        await until(pilot, lambda: "wipe of kernel requested (offset 24)" in notes(app))
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("p")  # the ledger saw the pause: this one unpauses
        await pilot.press("a")
        await settle(pilot)
    assert controls(log) == [
        {**base, **c} for base in [{"hold": False, "skill": None, "prompt": "",
                                    "background": True, "thinking": None, "parent": None,
                                    "gate": None, "agent": None, "reason": ""}]
        for c in ({"action": "wipe", "agent": "executor"},
                  {"action": "resume", "agent": "executor"},
                  {"action": "wipe", "agent": "kernel"},
                  {"action": "pause"}, {"action": "unpause"},
                  {"action": "approve", "gate": "signoff"})
    ]


async def test_an_empty_log_opens_ready(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    async with await open_store(db):
        pass
    async with app_for(db).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        status = app.query_one(StatusLine)
        ledger = app.query_one(LedgerView)
        await until(pilot, lambda: "Sisyphus ledger" in ledger.shown_text)
        line = str(status.render())
        assert "head 0" in line and "reading log" not in line
        assert app.query_one(EventStream).total == 0


async def test_a_big_log_opens_on_its_tail_and_scrolls_back_to_offset_1(
        tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    await asyncio.to_thread(build_log, db, 5000)  # 50 pages of the stream pane
    async with app_for(db).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        stream = app.query_one(EventStream)
        # The story's 14 rows and the 5000 fillers; the newest (offset 5020) on screen.
        await until(pilot, lambda: stream.total == 5014 and "5020 " in
                    "".join(stream.render_line(y).text for y in range(stream.list_height)))
        assert stream.following and stream.cursor_row == 5013
        assert last_offset(stream) == 5020
        assert stream.scroll_offset.y == 5014 - stream.list_height
        assert len(stream.events) <= 2 * PAGE  # only the pages on screen were read
        await pilot.press("home")
        await until(pilot, lambda: stream.render_line(0).text.split()[0] == "1")
        assert not stream.following and stream.scroll_offset.y == 0
        # b shows every row: 5020, offset 1 still on top.
        await pilot.press("b")
        await until(pilot, lambda: stream.total == 5020)
        await pilot.press("home")
        await until(pilot, lambda: stream.render_line(0).text.split()[0] == "1")
        assert stream.scroll_offset.y == 0


async def test_the_ledger_pane_is_current_when_shown_again(log: Path) -> None:
    """On a narrow terminal the ledger pane is hidden while another is shown; what the
    log says meanwhile is there when it comes back, wrapped beside its scrollbar."""
    async with app_for(log).run_test(size=(80, 24)) as pilot:
        app = pilot.app
        ledger = app.query_one(LedgerView)
        await pilot.press("3")
        await until(pilot, lambda: "Phase: execute" in ledger.shown_text)
        assert ledger._width == ledger.scrollable_content_region.width
        await pilot.press("2")
        assert not ledger.display
        async with await open_store(log) as store:
            await store.append("PHASE", {"phase": "gates", "reason": "plan done"},
                               actor="kernel")
        await until(pilot, lambda: "**Phase:** gates" in ledger.source)
        await pilot.press("3")
        await until(pilot, lambda: "Phase: gates" in ledger.shown_text)


async def test_agents_pane_keys_and_mouse(log: Path) -> None:
    async with app_for(log).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        table = app.query_one(AgentsTable)
        inbox = app.query_one(InboxView)
        await pilot.press("1", "end")
        assert table.selected == "validator"
        await until(pilot, lambda: "inbox of validator" in str(inbox.render()))
        await pilot.press("up")
        assert table.selected == "planner"
        await pilot.press("home")
        assert table.selected == "executor"
        # Each row fits its pane at 120 columns (name, state, pending, age; what it does
        # below): nothing to scroll sideways, and right does not.
        assert table.virtual_size.width <= table.size.width
        await pilot.press("right", "right")
        assert table.scroll_offset.x == 0
        lines = [table.render_line(y).text for y in range(1, 9)]
        assert "…" not in "".join(lines), lines
        for row, name in enumerate(table.rows):
            shown = table.shown(name)
            assert shown is not None and first_line_shows(table, row), lines
            assert lines[2 * row][1] == ("!" if shown.attention else " ")
        assert lines[1].strip() == "step 1"  # the executor's action, on its second line
        # A click on a row selects it, on either of its lines (below the border: the
        # header, the executor's two lines, then the kernel's).
        await pilot.click(AgentsTable, offset=(3, 4))
        assert table.selected == "kernel"
        await until(pilot, lambda: "inbox of kernel" in str(inbox.render()))
        await pilot.click(AgentsTable, offset=(3, 3))
        assert table.selected == "executor"
        await pilot.click(AgentsTable, offset=(3, 5))
        assert table.selected == "kernel"



def first_line_shows(table: AgentsTable, row: int) -> bool:
    """Whether ``row``'s first line shows its agent's name, state, pending and age whole."""
    name = table.rows[row]
    shown = table.shown(name)
    line = table.render_line(1 + 2 * row - table.scroll_offset.y).text
    return shown is not None and f" {name} {shown.state} {shown.pending} {shown.age} " in (
        " " + " ".join(line[2:].split()) + " ")


async def test_a_long_state_leaves_every_agent_its_row(log: Path) -> None:
    """An agent's state is free text (StatusUpdate.state: any string): one agent saying
    a long one does not hide what the others' rows say."""
    insert_events(log, [
        ("AGENT_REGISTERED", "visitor", None, {"agent": "visitor", "role": "researcher"}),
        ("STATUS_UPDATE", "visitor", None, {"agent": "visitor",
                                            "state": "waiting for the review of plan-2"}),
    ])
    async with app_for(log).run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = pilot.app.query_one(AgentsTable)
        assert table.rows[:4] == ["executor", "kernel", "planner", "validator"]
        assert all(first_line_shows(table, row) for row in range(4)), [
            table.render_line(y).text for y in range(1, 9)]

async def test_follow_filter_and_payload(log: Path) -> None:
    async with app_for(log).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        stream = app.query_one(EventStream)
        await pilot.press("f")
        assert not stream.following
        await pilot.press("f")
        assert stream.following
        await pilot.press("slash")
        bar = app.query_one("#filter", Input)
        assert bar.has_focus
        await pilot.press(*"type:MESSAGE", "enter")
        await settle(pilot)
        assert stream.total == 2 and stream.matches is not None
        assert "filter: type:MESSAGE" in str(app.query_one(StatusLine).render())
        await pilot.press("up", "enter")
        await settle(pilot)
        assert isinstance(app.screen, EventScreen)
        assert app.screen.event.payload["kind"] == "execute_step"
        await pilot.press("escape")
        await pilot.press("slash", *"agent:executor boom", "enter")
        await settle(pilot)
        assert stream.total == 1
        await pilot.press("slash", "ctrl+a", "ctrl+k", "enter")  # an empty filter: all
        await settle(pilot)
        # All of the story (bookkeeping hidden until b); b: all 20 events.
        await until(pilot, lambda: stream.scanned.is_set())
        assert shown_offsets(stream) == story_offsets() and not stream.filter.describe()
        await pilot.press("b")
        await until(pilot, lambda: stream.total == 20 and stream.matches is None)


async def test_spawn_form_refuses_bad_input_then_spawns(log: Path) -> None:
    async with app_for(log).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        await pilot.press("s")
        form = app.screen
        assert isinstance(form, SpawnForm)
        await pilot.click("#submit")
        assert "choose a skill" in str(form.query_one("#error", Label).render())
        form.query_one("#skill", Select).value = "researcher"
        form.query_one("#name", Input).value = "bad name!"
        await pilot.pause()
        form.submit()
        await pilot.pause()
        assert "the name must be" in str(form.query_one("#error", Label).render())
        form.query_one("#name", Input).value = "executor"
        form.submit()
        await pilot.pause()
        assert "exists already" in str(form.query_one("#error", Label).render())
        form.query_one("#name", Input).value = "r1"
        form.query_one("#prompt", Input).value = "find the SQL"
        form.submit()
        await pilot.pause()
        await settle(pilot)
        assert not isinstance(app.screen, SpawnForm)
    (spawn,) = controls(log)
    assert spawn | {"action": "spawn", "skill": "researcher", "agent": "r1",
                    "prompt": "find the SQL", "parent": "human"} == spawn


async def test_inject_form_refuses_bad_input_then_sends(log: Path) -> None:
    async with app_for(log).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        await pilot.press("i")
        form = app.screen
        assert isinstance(form, InjectForm)
        form.query_one("#to", Select).value = Select.NULL
        await pilot.pause()
        await pilot.click("#submit")
        assert "choose a recipient" in str(form.query_one("#error", Label).render())
        form.query_one("#to", Select).value = "planner"
        await pilot.pause()
        form.submit()
        await pilot.pause()
        assert "the message is empty" in str(form.query_one("#error", Label).render())
        form.query_one("#text", Input).value = "please re-plan"
        await pilot.pause()
        form.submit()
        await pilot.pause()
        await settle(pilot)
        await pilot.press("i", "escape")  # a cancelled form sends nothing
        assert not isinstance(app.screen, InjectForm)
    assert messages(log)[-1] == ("planner", "please re-plan")
    assert len(messages(log)) == 2


async def test_help_palette_and_quit(log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "ctrl+p")
        await settle(pilot)
        assert app.screen.__class__.__name__ == "CommandPalette"
        await pilot.press(*"wipe the")
        await settle(pilot)
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == 0


async def test_narrow_and_tiny_terminals(log: Path) -> None:
    async with app_for(log).run_test(size=(80, 24)) as pilot:
        app = pilot.app
        await settle(pilot)
        screen = app.screen
        assert screen.has_class("compact") and screen.has_class("show-2")
        assert app.query_one(EventStream).display and not app.query_one(AgentsTable).display
        await pilot.press("1")
        assert screen.has_class("show-1") and app.query_one(AgentsTable).display
        await pilot.press("3")
        assert app.query_one("#ledger-pane").display
        await pilot.press("4")
        assert app.query_one("#inbox-pane").display
        await pilot.resize_terminal(50, 12)
        await settle(pilot)
        assert screen.has_class("too-small")
        assert "too small" in str(app.query_one("#too-small").render())


async def test_hostile_agent_text_is_shown_literally(log: Path) -> None:
    async with app_for(log).run_test(size=(160, 40)) as pilot:
        app = pilot.app
        await settle(pilot)
        await pilot.press("1")  # executor: its inbox holds the hostile message
        await settle(pilot)
        inbox = str(app.query_one(InboxView).render())
        assert "[bold red]boom[/]" in inbox and "\\x1b[2J" in inbox
        await pilot.pause(0.2)  # let the pane repaint before the picture
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\x07" not in svg and "\x9b" not in svg
        assert "boom" in svg and "pwned" in svg
    event = Event(1, "MESSAGE", "x", "y", {"text": HOSTILE}, 0.0, None)
    plain = row_text(event).plain
    assert "\x1b" not in plain and "[bold red]boom[/]" in plain


async def test_attached_to_a_swarm_in_another_process(log: Path) -> None:
    """Another process appends; the app shows it live; quitting leaves the log alone."""
    import subprocess
    import sys

    app = app_for(log)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "sisyphus_tui", "send", "--db", str(log),
                             "--to", "executor", "from another shell"],
            capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        stream = app.query_one(EventStream)
        await until(pilot, lambda: last_offset(stream) == 21)  # the message, a story row
        assert shown_offsets(stream) == [*story_offsets(), 21]
    async with await open_store(log) as store:
        assert await store.head() == 21


async def test_the_demo_runs_inside_the_app_as_workers(tmp_path: Path) -> None:
    from sisyphus_tui.demo.runner import prepare_demo
    from sisyphus_tui.runtime import Swarm

    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        swarm = Swarm(store, workspace, wipes=(), speed=0)
        app = SisyphusApp(store, workspace=workspace, host=swarm)
        groups: set[str] = set()
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(1200):
                groups |= {w.group for w in app.workers}
                if app.outcome is not None:
                    break
                await pilot.pause(0.1)
            assert app.outcome is not None and app.outcome.phase == "done"
            await pilot.pause(0.3)
            assert "phase: done" in str(app.query_one(StatusLine).render())
        assert {"actor:kernel", "actor:planner", "actor:validator", "actor:executor",
                "actor:researcher"} <= groups


async def test_an_attached_app_steers_a_swarm_in_another_process(tmp_path: Path) -> None:
    """The swarm runs in `sisyphus demo --headless` (another process); the attached app
    shows it live, wipes its executor with `w`, and quitting leaves the swarm running."""
    import subprocess

    from tests.swarm.conftest import demo_argv

    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db):  # made here so the app can open it at once
        pass
    host = await asyncio.to_thread(
        subprocess.Popen, demo_argv(db, workspace) + ["--speed", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        app = SisyphusApp(db=db)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(AgentsTable)
            for _ in range(600):
                if app.ledger.phase == "execute" and "executor" in table.rows:
                    break
                await pilot.pause(0.1)
            assert app.ledger.phase == "execute"
            await pilot.press("1")
            await pilot.pause(0.2)
            # (Choosing a row with the arrows is covered above; here, the steering.)
            table.select_row(table.rows.index("executor"))
            await pilot.pause(0.1)
            assert table.selected == "executor"
            await confirm(pilot, "w")
            for _ in range(600):
                if await store_has(db, "RESUMED", "executor"):
                    break
                await pilot.pause(0.1)
            assert await store_has(db, "RESUMED", "executor")
            assert [c["agent"] for c in controls(db) if c["action"] == "wipe"] == ["executor"]
        # The app quit; the swarm in the other process carries on to the end.
        out, err = await asyncio.to_thread(host.communicate, timeout=240)
    finally:
        if host.poll() is None:
            host.kill()
            host.communicate()
    assert host.returncode == 0, err
    assert "executor: context wiped" in out and "done: 4/4 steps" in out


async def store_has(db: Path, event_type: str, agent: str) -> bool:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT count(*) FROM events WHERE type = ? AND "
                           "json_extract(payload, '$.agent') = ?", (event_type, agent)).fetchone()
        return bool(row[0])
    finally:
        conn.close()
