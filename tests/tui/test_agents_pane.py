"""The agents pane on a real log: name, true state, current action, pending messages and
age in two lines per agent with no sideways scrolling at 120x40 or 80x24; a wipe and its
resume shown for a few seconds; agents that need someone first and marked; the keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.widgets.panes import (
    RESUMED_SHOWN_S,
    WIPED_SHOWN_S,
    AgentsTable,
    InboxPane,
    InboxView,
    age,
    short_cost,
    turn_time,
)
from tests.tui.panes_app import SIZES, PaneApp, append, fold, lines_of, pane_width
from tests.tui.test_app import app_for, until

LONG_NAME = "memory-lane-researcher-of-precedents"
HOSTILE = "[red]x[/] \x1b[2J\x1b]0;pwned\x07 first line\nsecond line"


def spawned(name: str, role: str) -> tuple[str, dict[str, Any], str, None]:
    return ("AGENT_SPAWNED", {"agent": name, "role": role, "skill": None,
                              "thinking": "off"}, "kernel", None)


def status(name: str, state: str, detail: str = "") -> tuple[str, dict[str, Any], str, None]:
    return ("STATUS_UPDATE", {"agent": name, "state": state, "detail": detail}, name, None)


def note(to: str) -> tuple[str, dict[str, Any], str, str]:
    return ("MESSAGE", {"kind": "note", "text": "hello", "data": {}, "reply_to": None},
            "kernel", to)


@pytest.fixture
async def swarm(tmp_path: Path) -> tuple[Path, float]:
    """A log of five agents written through the store; the executor's last event's time."""
    db = tmp_path / "swarm.db"
    stamps = await append(
        db, ("TASK_INIT", {"goal": "refactor"}, "human", None),
        spawned("kernel", "kernel"), spawned("planner", "planner"),
        spawned("validator", "validator"), spawned("executor", "executor"),
        spawned(LONG_NAME, "researcher"),
        ("AGENT_OUTPUT", {"agent": "validator", "message": 1, "sequence": 0,
                          "kind": "tool_call", "data": {"name": "Read"}}, "validator", None),
        note("planner"), note("planner"),
        status("executor", "working", "step 3: write a failing test"))
    return db, stamps[-1]


def row_lines(table: AgentsTable, agent: str) -> tuple[str, str]:
    """The two lines ``agent``'s row draws (its first line, then its action)."""
    row = table.rows.index(agent)
    return (table.render_line(2 * row + 1 - table.scroll_offset.y).text,
            table.render_line(2 * row + 2 - table.scroll_offset.y).text)


async def show_log(pilot: Any, table: AgentsTable, db: Path, now: float | None,
                   hosted: bool | None = True) -> None:
    """Fold the log at ``db`` and show it at ``now``, as a tick of the app does."""
    ledger, head = await fold(db)
    table.show(ledger, head, now, hosted=hosted)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
async def test_rows_say_state_action_pending_and_age_without_sideways_scrolling(
        swarm: tuple[Path, float], size: tuple[int, int]) -> None:
    db, last = swarm
    table = AgentsTable()
    async with PaneApp(table, pane_width(size)).run_test(size=size) as pilot:
        await show_log(pilot, table, db, last + 2)
        first, action = row_lines(table, "executor")
        assert first[2:].split()[:4] == ["executor", "working", "0", "2s"]
        assert action.strip() == "step 3: write a failing test"  # 28 cells: it fits
        assert row_lines(table, "validator")[1].strip() == "tool_call: Read"
        # Pending messages, not lag: the planner has two unread, the others none.
        assert row_lines(table, "planner")[0][2:].split()[2] == "2"
        assert row_lines(table, "kernel")[0][2:].split()[2] == "0"
        # Nothing wider than the pane: no horizontal scrollbar, every line fits.
        width = table.scrollable_content_region.width
        assert not table.show_horizontal_scrollbar
        assert table.virtual_size.width <= width
        assert all(len(line) <= width for line in lines_of(table))
        header = lines_of(table)[0]
        assert header.split()[:4] == ["agent", "state", "inbox", "age"]
        if size == (120, 40):
            assert width == 32  # the 34-cell pane inside its border
            # A name longer than its column is cut, not pushing the others out.
            long_first = row_lines(table, LONG_NAME)[0]
            assert "…" in long_first and "idle" in long_first
            assert "thinking" not in header
        else:
            # The whole width on a narrow terminal: role, phase, cursor and thinking too.
            assert header.split() == ["agent", "state", "inbox", "age", "role", "phase",
                                      "cursor", "thinking"]
            assert row_lines(table, LONG_NAME)[0][2:].split()[1:3] == ["idle", "0"]


async def test_an_action_from_the_log_is_shown_literally_on_one_line(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await append(db, spawned("executor", "executor"), status("executor", "working", HOSTILE))
    table = AgentsTable()
    async with PaneApp(table, "1fr").run_test(size=(120, 40)) as pilot:
        await show_log(pilot, table, db, None)
        action = row_lines(table, "executor")[1].strip()
        # Markup as typed, escapes as \x.., the first line and the last meaningful one.
        assert action == ("[red]x[/] \\x1b[2J\\x1b]0;pwned\\x07 first line … second line")


@pytest.mark.parametrize("size", SIZES)
async def test_states_are_true_paused_no_host_blocked(
        swarm: tuple[Path, float], size: tuple[int, int]) -> None:
    db, last = swarm
    table = AgentsTable()
    async with PaneApp(table, pane_width(size)).run_test(size=size) as pilot:
        await append(db, ("CONTROL", {"action": "pause"}, "human", None))
        await show_log(pilot, table, db, last + 2)
        assert row_lines(table, "executor")[0][2:].split()[1] == "paused"
        # The host went away: nothing runs these agents, whatever they last said.
        await show_log(pilot, table, db, last + 2, hosted=False)
        first = row_lines(table, "executor")[0]
        assert "no host" in first and first[1] == "!"
        # hosted unknown: never claims there is no host.
        await show_log(pilot, table, db, last + 2, hosted=None)
        assert "no host" not in "\n".join(lines_of(table))
        await append(db, ("PHASE", {"phase": "blocked", "reason": "tests fail"},
                          "kernel", None))
        await show_log(pilot, table, db, last + 2)
        assert row_lines(table, "executor")[0][2:].split()[1] == "blocked"


@pytest.mark.parametrize("size", SIZES)
async def test_a_wipe_then_its_resume_are_shown_for_a_few_seconds(
        swarm: tuple[Path, float], size: tuple[int, int]) -> None:
    db, _ = swarm
    # The wipe and the resume land together, as they do when the swarm carries out `w`.
    wiped, resumed = await append(
        db, ("CONTEXT_WIPED", {"agent": "executor", "lost": {}}, "swarm", None),
        ("RESUMED", {"agent": "executor", "cursor": 100, "reread": 2, "duration_ms": 2.2},
         "executor", None))
    ledger, head = await fold(db)
    table = AgentsTable()
    async with PaneApp(table, pane_width(size)).run_test(size=size) as pilot:
        async def at(now: float) -> tuple[str, str]:
            table.show(ledger, head, now, hosted=True)
            await pilot.pause()
            first, action = row_lines(table, "executor")
            return first[2:].split()[1], action.strip()

        assert await at(resumed) == ("wiped", "context wiped")
        # Shown where it was: a recovery on show does not move the row.
        assert table.rows == ["executor", "kernel", LONG_NAME, "planner", "validator"]
        assert (await at(wiped + WIPED_SHOWN_S - 0.1))[0] == "wiped"
        text = "resumed from checkpoint @100 (2 events, 2 ms)"
        state, action = await at(wiped + WIPED_SHOWN_S + 0.1)
        assert state == "resumed"
        width = table.scrollable_content_region.width
        # Cut at the pane's edge if it must be, never wrapped or scrolled sideways.
        assert action == text if len(text) + 4 <= width else (
            action.endswith("…") and text.startswith(action[:-1]))
        assert (await at(wiped + WIPED_SHOWN_S + RESUMED_SHOWN_S - 0.1))[0] == "resumed"
        assert await at(wiped + WIPED_SHOWN_S + RESUMED_SHOWN_S + 0.1) == (
            "idle", "step 3: write a failing test")
        # Opened long after: no story of an old wipe.
        assert (await at(wiped + 3600))[0] == "idle"


@pytest.mark.parametrize("size", SIZES)
async def test_agents_that_need_someone_come_first_marked_and_the_selection_stays(
        swarm: tuple[Path, float], size: tuple[int, int]) -> None:
    db, last = swarm
    table = AgentsTable()
    app = PaneApp(table, pane_width(size))
    async with app.run_test(size=size) as pilot:
        table.focus()
        await show_log(pilot, table, db, last + 2)
        assert table.rows == ["executor", "kernel", LONG_NAME, "planner", "validator"]
        await pilot.press("j", "j", "j")
        assert table.selected == "planner"
        await append(db, ("AGENT_FAILED", {"agent": "validator", "error": "boom"},
                          "swarm", None), status(LONG_NAME, "waiting", "permission: Bash"))
        await show_log(pilot, table, db, last + 2)
        assert table.rows == [LONG_NAME, "validator", "executor", "kernel", "planner"]
        assert table.selected == "planner"  # the same agent, on another row
        # The mark is a character, not only a colour: seen with NO_COLOR too.
        for name in (LONG_NAME, "validator"):
            assert row_lines(table, name)[0][1] == "!"
        for name in ("executor", "kernel"):
            assert row_lines(table, name)[0][1] == " "
        assert row_lines(table, "planner")[0][0] == "▸"
        assert row_lines(table, "validator")[1].strip() == "boom"
        # g, G, k and enter: enter says which agent (the app opens its transcript).
        await pilot.press("g")
        assert table.selected == LONG_NAME
        await pilot.press("G", "k", "enter")
        assert table.selected == "kernel"
        assert app.opened == ["kernel"]


async def test_a_click_selects_the_row_under_it_on_either_line(
        swarm: tuple[Path, float]) -> None:
    db, last = swarm
    table = AgentsTable()
    async with PaneApp(table, "38").run_test(size=(120, 40)) as pilot:
        await show_log(pilot, table, db, last + 2)
        # Inside the border: the header on line 0, then two lines per agent.
        # (offsets from the border's corner: the header is at y=1)
        await pilot.click(AgentsTable, offset=(3, 2 + 2 * 3))  # the 4th agent's first line
        assert table.selected == table.rows[3]
        await pilot.click(AgentsTable, offset=(3, 2 + 2 * 1 + 1))  # the 2nd one's action
        assert table.selected == table.rows[1]


async def test_only_the_rows_that_changed_are_drawn_again(swarm: tuple[Path, float]) -> None:
    db, last = swarm
    table = AgentsTable()
    async with PaneApp(table, "38").run_test(size=(120, 40)) as pilot:
        await show_log(pilot, table, db, last + 2)
        before = {y: table.render_line(y) for y in range(1, 11)}
        await append(db, status("executor", "working", "step 4: making it pass"))
        await show_log(pilot, table, db, last + 2)
        after = {y: table.render_line(y) for y in range(1, 11)}
        changed = [y for y in before if after[y] is not before[y]]
        row = table.rows.index("executor")
        assert changed == [2 * row + 1, 2 * row + 2]
        assert "step 4: making it pass" in after[2 * row + 2].text


def test_ages_are_short() -> None:
    assert [age(s) for s in (0, 2.7, 59, 60, 3599, 3600, 86400 * 3, -4)] == [
        "0s", "2s", "59s", "1m", "59m", "1h", "3d", "0s"]


@pytest.mark.parametrize("size", SIZES)
async def test_in_the_app_the_pane_fits_and_tells_the_executor_s_story(
        log: Path, size: tuple[int, int]) -> None:
    async with app_for(log).run_test(size=size) as pilot:
        table = pilot.app.query_one(AgentsTable)
        await pilot.press("1")
        await until(pilot, lambda: "executor" in table.rows)
        await pilot.pause()
        first, action = row_lines(table, "executor")
        # Nothing hosts this log: its last word was working, but nothing runs it now.
        # (The fixed clock is 11 s after the executor's last event.)
        assert first[1] == "!"
        assert first[2:].split()[:5] == ["executor", "no", "host", "1", "11s"]
        assert action.strip() == "step 1"
        assert not table.show_horizontal_scrollbar
        assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_the_inbox_scrolls_with_j_k_g_and_G(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    await append(db, spawned("executor", "executor"), *[note("executor")] * 30)
    async with await open_store(db) as store:
        events = (await store.read(1, 100, to="executor")).events
    inbox = InboxView()
    pane = InboxPane(inbox)
    # As tall as the inbox pane of the main screen (9 lines, with its border).
    async with PaneApp(pane, "1fr").run_test(size=(80, 9)) as pilot:
        inbox.show("executor", events, 0)
        pane.focus()
        await pilot.pause()
        assert pane.max_scroll_y > 2
        # (a scroll may be animated: wait for where it lands)
        await pilot.press("j")
        await until(pilot, lambda: pane.scroll_y == 1)
        await pilot.press("j")
        await until(pilot, lambda: pane.scroll_y == 2)
        await pilot.press("k")
        await until(pilot, lambda: pane.scroll_y == 1)
        await pilot.press("G")
        await until(pilot, lambda: pane.scroll_y == pane.max_scroll_y)
        await pilot.press("g")
        await until(pilot, lambda: pane.scroll_y == 0)


async def test_the_kernel_waiting_on_its_team_needs_nobody_but_waiting_on_a_person_does(
        tmp_path: Path) -> None:
    """The kernel waits on its agents all run long: no mark; once it waits for a human
    gate, it is marked and sorted first. Another agent waiting (a permission) is marked."""
    db = tmp_path / "swarm.db"
    await append(
        db, ("TASK_INIT", {"goal": "g", "spec": {"gates": [{"name": "signoff",
                                                             "human": True}]}}, "human", None),
        spawned("executor", "executor"), spawned("kernel", "kernel"),
        status("kernel", "waiting", "executor on step 1/1"))
    table = AgentsTable()
    async with PaneApp(table, "1fr").run_test(size=(120, 40)) as pilot:
        await show_log(pilot, table, db, None)
        assert row_lines(table, "kernel")[0][1] == " " and table.rows[0] == "executor"
        await append(db, status("executor", "waiting", "permission: Bash"))
        await show_log(pilot, table, db, None)
        assert row_lines(table, "executor")[0][1] == "!"
        assert row_lines(table, "kernel")[0][1] == " "
        await append(db, ("PHASE", {"phase": "gates", "reason": ""}, "kernel", None),
                     ("CHECKPOINT", {"agent": "kernel", "cursor": 0,
                                     "state": {"waiting_gate": "signoff"}}, "kernel", None))
        await show_log(pilot, table, db, None)
        assert row_lines(table, "kernel")[0][1] == "!"


async def test_an_agent_run_on_its_own_is_never_said_to_have_no_host(tmp_path: Path) -> None:
    """No run in the log (`sisyphus agent` spawns its agent on its own database): no
    swarm to host, so nothing says no host; the agent's own state is shown."""
    db = tmp_path / "swarm.db"
    await append(db, spawned("asker", "executor"), status("asker", "working", "tool_call: Read"))
    table = AgentsTable()
    async with PaneApp(table, "1fr").run_test(size=(120, 40)) as pilot:
        await show_log(pilot, table, db, None, hosted=False)
        assert row_lines(table, "asker")[0][2:].split()[1] == "working"


# -- issue 11: what each real agent is doing ------------------------------------------


def usage(agent: str, tokens_in: int, tokens_out: int, cost: float, estimate: bool
          ) -> tuple[str, dict[str, Any], str, None]:
    return ("AGENT_OUTPUT", {"agent": agent, "message": 1, "sequence": 9, "kind": "usage",
                             "data": {"tokens_in": tokens_in, "tokens_out": tokens_out,
                                      "tokens_cached": 0, "cost_usd": cost,
                                      "cost_is_estimate": estimate}}, agent, None)


def turn(agent: str) -> tuple[str, dict[str, Any], str, None]:
    return ("TURN_STARTED", {"agent": agent, "message": 1, "attempt": 1,
                             "backend": "claude", "prompt_sha256": "0" * 64}, agent, None)


@pytest.fixture
async def agents(tmp_path: Path) -> tuple[Path, float]:
    """An agent in each state a supervised run shows, short names (a 34-cell pane keeps
    8 cells for them); the worker's turn start time."""
    db = tmp_path / "swarm.db"
    names = ("ask", "work", "stall", "queue", "wipe", "fail", "done", "cancel")
    stamps = await append(
        db, ("TASK_INIT", {"goal": "refactor"}, "human", None),
        *[spawned(name, "executor") for name in names],
        turn("work"),
        ("AGENT_OUTPUT", {"agent": "work", "message": 1, "sequence": 0, "kind": "tool_call",
                          "data": {"name": "Bash", "input": {"command": "ls"}}}, "work", None),
        usage("work", 12_000, 3_100, 0.12, True),
        turn("ask"),
        ("PERMISSION_REQUESTED", {"agent": "ask", "request": "r1", "message": 1,
                                  "tool": "Bash", "input": {}}, "ask", None),
        usage("ask", 900, 40, 1.5, False),
        turn("stall"), ("AGENT_OUTPUT", {"agent": "stall", "message": 1, "sequence": 0,
                                         "kind": "text", "text": "thinking"}, "stall", None),
        ("AGENT_STALLED", {"agent": "stall", "message": 1, "silent_s": 300}, "swarm", None),
        ("AGENT_QUEUED", {"agent": "queue", "backend": "claude", "running": 2, "cap": 2},
         "swarm", None),
        ("CONTEXT_WIPED", {"agent": "wipe", "lost": {}}, "swarm", None),
        ("AGENT_FAILED", {"agent": "fail", "error": "boom"}, "swarm", None),
        ("AGENT_STOPPED", {"agent": "done", "reason": "finished"}, "swarm", None),
        turn("cancel"),
        ("AGENT_CANCELLED", {"agent": "cancel", "message": 1, "how": "sigint"}, "swarm", None))
    return db, stamps[9]


@pytest.mark.parametrize("size", SIZES)
async def test_each_state_with_time_on_turn_cost_and_tokens_fits_the_pane(
        agents: tuple[Path, float], size: tuple[int, int]) -> None:
    db, started = agents
    table = AgentsTable()
    async with PaneApp(table, pane_width(size)).run_test(size=size) as pilot:
        await show_log(pilot, table, db, started + 42, hosted=True)
        # Waiting for a permission first, then the others that need someone, marked.
        assert table.rows[0] == "ask"
        assert set(table.rows[1:5]) == {"stall", "wipe", "fail", "cancel"}
        for name, state in (("ask", "needs input"), ("work", "working"),
                            ("stall", "stalled"), ("queue", "queued"), ("wipe", "wiped"),
                            ("fail", "failed"), ("done", "done"), ("cancel", "cancelled")):
            first = row_lines(table, name)[0]
            # The state whole, "needs input" too (11 cells): name, state, inbox, age.
            assert f" {state} " in first, (name, first)
            assert first[1] == ("!" if name in ("ask", "stall", "wipe", "fail", "cancel")
                                else " "), (name, first)
        width = table.scrollable_content_region.width
        assert all(len(line) <= width for line in lines_of(table))
        assert not table.show_horizontal_scrollbar
        action = " ".join(row_lines(table, "work")[1].split())
        # The time on the turn, the cost (an estimate: ~), the action; tokens where the
        # action keeps its room (the whole width at 80 columns).
        if size == (120, 40):
            assert width == 32
            assert action == "0:42 ~$0.12 tool_call: Bash"
        else:
            assert action == "0:42 ~$0.12 12.0k/3.1k tok tool_call: Bash"
        ask = " ".join(row_lines(table, "ask")[1].split())
        assert ask.endswith("$1.50" + (" 900/40 tok" if size[0] < 100 else "")
                            + " asks to use Bash"), ask
        assert ask.split()[0].count(":") == 1  # its turn's time too
        # A queued agent's turn waits: no time yet; the stalled one says for how long.
        assert row_lines(table, "queue")[1].split()[:1] == ["waits"]
        stall = " ".join(row_lines(table, "stall")[1].split())
        assert stall.startswith("0:41 no output for 3")  # (cut in the 34-cell pane)
        assert "turn cancelled (sigint): restart to redo it" in " ".join(
            row_lines(table, "cancel")[1].split()) or row_lines(table, "cancel")[1].endswith(
            "…")
        # Live: a minute on, the action lines drawn again are those whose turn's clock
        # moved (every age moved: the first lines all change).
        actions = range(2, 2 * len(table.rows) + 1, 2)
        before = {y: table.render_line(y) for y in actions}
        await show_log(pilot, table, db, started + 102, hosted=True)
        assert " ".join(row_lines(table, "work")[1].split()).startswith("1:42 ~$0.12")
        after = {y: table.render_line(y) for y in actions}
        changed = {table.rows[y // 2 - 1] for y in actions if after[y] is not before[y]}
        assert changed == {"work", "ask", "stall"}, changed


async def test_a_paused_swarm_shows_its_working_agents_paused_their_turn_time_on(
        agents: tuple[Path, float]) -> None:
    db, started = agents
    await append(db, ("CONTROL", {"action": "pause"}, "human", None))
    table = AgentsTable()
    async with PaneApp(table, "34").run_test(size=(120, 40)) as pilot:
        await show_log(pilot, table, db, started + 5, hosted=True)
        assert " paused " in row_lines(table, "work")[0]
        assert row_lines(table, "work")[1].split()[0] == "0:05"
        # needs input is not paused away: the request still waits for someone.
        assert " needs input " in row_lines(table, "ask")[0]


def test_costs_and_turn_times_are_short() -> None:
    assert [turn_time(s) for s in (0, 5.9, 65, 3599, 3600, 3725)] == [
        "0:00", "0:05", "1:05", "59:59", "1:00:00", "1:02:05"]
    assert [short_cost(c, e) for c, e in ((0.0, False), (0.123, True), (15.4, False),
                                          (123.4, True), (0.0041, True))] == [
        "$0.00", "~$0.12", "$15.40", "~$123", "~$0.0041"]
