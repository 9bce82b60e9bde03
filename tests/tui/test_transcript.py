"""An agent's transcript (enter on it in the agents pane), on a real SQLite log: what it
was asked, said (text literal), thought (dimmed), its tool calls with their inputs and
results (a long result folded, enter unfolds it), the permission asked and its answer;
only the pages on screen are read from a long transcript; what the agent says while the
screen is open joins at the bottom; escape goes back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.transcript import TranscriptScreen
from sisyphus_tui.tui.widgets.panes import AgentsTable
from sisyphus_tui.tui.widgets.transcript import PAGE, TranscriptView
from tests.tui.conftest import NOW
from tests.tui.fixtures import HOSTILE, insert_events
from tests.tui.test_app import until

SIZES = [(120, 40), (80, 24)]
SAID = "[bold red]not bold[/] \x1b]0;pwned\x07 first line\nsecond line of the answer"


def output(kind: str, sequence: int, text: str = "", data: dict[str, Any] | None = None,
           agent: str = "executor") -> tuple[str, str, None, dict[str, Any]]:
    return ("AGENT_OUTPUT", agent, None, {"agent": agent, "message": 14,
                                          "sequence": sequence, "kind": kind, "text": text,
                                          "data": data or {}})


def a_turn() -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    """A turn of the executor: its thinking, a tool call, a long result, a permission
    asked and answered, what it said, its usage; and the planner's output beside it."""
    result = "\n".join(f"collected test {n}" for n in range(1, 41))
    return [
        ("TURN_STARTED", "executor", None, {
            "agent": "executor", "message": 14, "attempt": 1, "backend": "claude",
            "model": "sonnet", "prompt_sha256": "0" * 64}),
        output("thinking", 0, "I should run the tests first."),
        output("tool_call", 1, data={"name": "Bash", "id": "t1",
                                     "input": {"command": "pytest -q [x]"}}),
        output("tool_result", 2, result, {"id": "t1", "is_error": False}),
        ("PERMISSION_REQUESTED", "executor", None, {
            "agent": "executor", "request": "r1", "message": 14, "tool": "Edit",
            "input": {"path": "app.py"}, "reason": "edits outside the workspace"}),
        # A person's answer: its actor is the person, it names the agent in its payload.
        ("PERMISSION_ANSWERED", "human", None, {
            "agent": "executor", "request": "r1", "decision": "deny", "always": False,
            "message": "not [i]that[/i] file", "by": "human"}),
        # The planner's answer says "executor" in its message: found by the text scan,
        # and left out once read (another agent's).
        ("PERMISSION_ANSWERED", "human", None, {
            "agent": "planner", "request": "p1", "decision": "allow", "always": False,
            "message": "like the executor", "by": "human"}),
        output("text", 3, "the planner's own words", agent="planner"),
        output("text", 4, SAID),
        output("usage", 5, data={"tokens_in": 1200, "tokens_out": 300,
                                 "tokens_cached": 0, "cost_usd": 0.0123}),
    ]


async def open_transcript(pilot: Any, agent: str = "executor") -> TranscriptView:
    app = pilot.app
    await pilot.press("1")
    table = app.query_one(AgentsTable)
    await until(pilot, lambda: agent in table.rows)
    table.select_row(table.rows.index(agent))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, TranscriptScreen))
    view = app.screen.query_one(TranscriptView)
    await until(pilot, lambda: view.scanned.is_set() and view.total > 0
                and "…" not in [line[-1:] for line in view.shown_text.split("\n") if line])
    return view


def text_of(view: TranscriptView) -> str:
    return view.shown_text


def lines_of(view: TranscriptView) -> list[str]:
    """The screen's lines, stripped."""
    return [line.strip() for line in view.shown_text.split("\n")]


@pytest.mark.parametrize("size", SIZES)
async def test_the_transcript_tells_the_turn_literally_and_folds_a_long_result(
        log: Path, size: tuple[int, int]) -> None:
    insert_events(log, a_turn())
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        view = await open_transcript(pilot)
        # What it was asked (its two messages), then its turn: 2 + 8 blocks, the
        # planner's output and its answer left out.
        await until(pilot, lambda: len(view.hidden) == 1)
        assert view.total == 11 and len(view.hidden) == 1
        await pilot.press("g")
        await until(pilot, lambda: "✉ kernel → executor: execute_step" in text_of(view))
        shown = text_of(view)
        # The person's note: its escape as \x1b, its markup as typed.
        assert "\\x1b[2J\\x1b]0;pwned\\x07 [bold red]boom[/]" in shown
        assert "\x1b" not in shown
        assert "turn on message @14, attempt 1 (claude, sonnet)" in shown
        assert "thinks" in shown and "I should run the tests first." in shown
        assert "⚙ Bash" in shown and '"command": "pytest -q [x]"' in shown
        # The long result: four lines, then how many more.
        assert "collected test 4" in shown and "collected test 5" not in shown
        assert "… 36 more lines (enter shows them)" in shown
        # Thinking is dimmed: its lines are styled dim.
        row = next(r for r in range(view.total) if "thinks" in (
            view._lines_of(r) or [""])[0].__str__())
        lines = view._lines_of(row)
        assert lines is not None and lines[1].plain.strip() == "I should run the tests first."
        assert any("dim" in str(span.style) for span in lines[1].spans)
        # The result's block unfolds with enter, and folds again.
        result_row = next(r for r in range(view.total) if "↳ result" in str(
            (view._lines_of(r) or [""])[0]))
        view.select(result_row)
        await pilot.press("enter")
        await until(pilot, lambda: "collected test 5" in text_of(view))
        await pilot.press("enter")
        await until(pilot, lambda: "collected test 5" not in text_of(view))
        await pilot.press("G")
        await until(pilot, lambda: "second line of the answer" in text_of(view))
        shown = text_of(view)
        assert "? asks to use Edit" in shown and "reason: edits outside the workspace" in shown
        assert "✗ denied by human" in shown and "not [i]that[/i] file" in shown
        assert "[bold red]not bold[/] \\x1b]0;pwned\\x07 first line" in shown
        assert "usage: 1.2k in, 300 out, 0 cached, $0.0123" in shown
        assert "planner's own words" not in shown and "like the executor" not in shown
        # Nothing wider than the screen.
        assert all(len(line) <= view.size.width for line in shown.split("\n"))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TranscriptScreen))


async def test_a_long_transcript_reads_only_the_pages_on_screen(log: Path) -> None:
    insert_events(log, [output("text", n, f"line number {n}") for n in range(5000)])
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await open_transcript(pilot)
        assert view.total == 5002  # and its two messages
        assert "line number 4999" in text_of(view)
        # The tail's page (and the one before it, were the screen across two): not the
        # 51 pages of the whole transcript.
        assert view.reads <= 2, view.reads
        before = view.reads
        await pilot.press("g")
        await until(pilot, lambda: "execute_step" in text_of(view))
        assert view.reads - before <= 1
        await pilot.press("pagedown", "pagedown")
        await until(pilot, lambda: "line number 40" in lines_of(view))
        assert view.reads <= 4 and not view.following
        await pilot.press("G")
        await until(pilot, lambda: "line number 4999" in text_of(view) and view.following)
        assert view.reads <= 5
        assert len(view.events) <= 6 * PAGE


@pytest.mark.parametrize("size", SIZES)
async def test_what_the_agent_says_while_open_joins_at_the_bottom(
        log: Path, size: tuple[int, int]) -> None:
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        view = await open_transcript(pilot)
        assert view.total == 2 and view.following
        async with await open_store(log) as store:
            for n in range(60):
                await store.append("AGENT_OUTPUT", {
                    "agent": "executor", "message": 14, "sequence": n, "kind": "text",
                    "text": f"live {n} {HOSTILE}"}, actor="executor")
            await store.append("AGENT_OUTPUT", {
                "agent": "planner", "message": 3, "sequence": 0, "kind": "text",
                "text": "not the executor's"}, actor="planner")
        await until(pilot, lambda: "live 59 " in text_of(view))
        assert view.total == 62 and view.following
        assert "not the executor's" not in text_of(view)
        assert "\\x1b[2J" in text_of(view) and "\x1b" not in text_of(view)
        # Moved up, it stays where it is while more arrives.
        await pilot.press("k", "k", "k")
        top = view.top
        async with await open_store(log) as store:
            await store.append("AGENT_OUTPUT", {
                "agent": "executor", "message": 14, "sequence": 60, "kind": "text",
                "text": "live 60"}, actor="executor")
        await until(pilot, lambda: view.total == 63)
        assert not view.following and view.top == top
        assert "live 60" not in text_of(view)
        await pilot.press("G")
        await until(pilot, lambda: "live 60" in text_of(view))


async def test_a_request_arriving_over_the_transcript_is_said_and_answered_there(
        log: Path) -> None:
    from sisyphus_tui.tui.screens.permission import PermissionScreen

    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        view = await open_transcript(pilot)
        async with await open_store(log) as store:
            await store.append("PERMISSION_REQUESTED", {
                "agent": "executor", "request": "r1", "message": 14, "tool": "Bash",
                "input": {"command": "ls"}}, actor="executor")
        # The banner is on the main screen, under this one: a toast says it.
        await until(pilot, lambda: "executor asks to use Bash: press a" in [
            n.message for n in app._notifications])
        await until(pilot, lambda: "? asks to use Bash" in text_of(view))
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen))
        await pilot.press("1")
        await until(pilot, lambda: "✓ allowed by human" in text_of(view))
        assert isinstance(app.screen, TranscriptScreen)
