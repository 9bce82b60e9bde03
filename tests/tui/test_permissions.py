"""Permission prompts answered from the TUI, on a real SQLite log: the banner and the
status line say who asks, the terminal is told once per request (the bell, OSC 9 or OSC
777 where the terminal shows one), ``a`` opens the dialog with the tool, its input
(literal) and the reason; allow once, allow always and deny with a message each append
the right PERMISSION_ANSWERED; several requests come one after another, oldest first; an
answer from another process (``sisyphus answer``) closes the dialog and the banner."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.drivers.headless_driver import HeadlessDriver
from textual.widgets import Input, Static

from sisyphus_tui.stream import open_store
from sisyphus_tui.stream.lease import HostLease
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.permission import PermissionScreen
from sisyphus_tui.tui.terminal_alert import alert, osc777, osc777_supported
from sisyphus_tui.tui.widgets.panes import AgentsTable, StatusLine
from tests.tui.conftest import NOW
from tests.tui.fixtures import HOSTILE
from tests.tui.test_app import until

SIZES = [(120, 40), (80, 24)]
ITERM = {"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}
COMMAND = "rm -rf build && echo '[red]x[/]' \x1b[2J\nsecond line"


@pytest.fixture
async def hosted(log: Path) -> Any:
    """The log with a host holding its lease (what runs the asking agents)."""
    lease = await HostLease.acquire(log)
    yield log
    lease.release()


def captured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What apps write to their (headless) terminal to call the user back."""
    writes: list[str] = []

    def write(driver: HeadlessDriver, data: str) -> None:
        if data.startswith("\a"):
            writes.append(data)

    monkeypatch.setattr(HeadlessDriver, "write", write)
    return writes


async def ask(db: Path, agent: str = "executor", request: str = "toolu_1",
              tool: str = "Bash", command: str = COMMAND, reason: str = "") -> int:
    """A turn of ``agent`` and its permission request, appended as the runner does."""
    async with await open_store(db) as store:
        await store.append("TURN_STARTED", {
            "agent": agent, "message": 14, "attempt": 1, "backend": "claude",
            "prompt_sha256": "0" * 64}, actor=agent, key=f"turn:{agent}:14:1:{request}")
        return await store.append("PERMISSION_REQUESTED", {
            "agent": agent, "request": request, "message": 14, "tool": tool,
            "input": {"command": command, "timeout": 60}, "reason": reason,
            "timeout_s": 600, "on_timeout": "deny"},
            actor=agent, key=f"permission:{agent}:{request}")


def answers(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT payload, actor FROM events WHERE type = "
                        "'PERMISSION_ANSWERED' ORDER BY \"offset\"").fetchall()
    conn.close()
    return [json.loads(p) | {"_actor": a} for p, a in rows]


def banner(app: SisyphusApp) -> str:
    widget = app.query_one("#needs-you", Static)
    return str(widget.render()) if widget.has_class("visible") and widget.display else ""


def dialog(app: SisyphusApp) -> PermissionScreen | None:
    return app.screen if isinstance(app.screen, PermissionScreen) else None


def dialog_text(screen: PermissionScreen) -> str:
    return "\n".join(str(w.render()) for w in screen.query("Label, Static"))


async def opened(pilot: Any) -> PermissionScreen:
    await pilot.press("a")
    await until(pilot, lambda: dialog(pilot.app) is not None)
    screen = dialog(pilot.app)
    assert screen is not None
    return screen


@pytest.mark.parametrize("size", SIZES)
async def test_a_request_is_said_rung_once_and_allowed_once_from_the_dialog(
        hosted: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    log = hosted
    writes = captured(monkeypatch)
    app = SisyphusApp(db=log, clock=lambda: NOW, env=ITERM)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app._caught_up)
        await ask(log, reason="Bash is not allowed without asking")
        await until(pilot, lambda: "executor asks to use Bash: press a" in banner(app))
        status = app.query_one(StatusLine)
        await until(pilot, lambda: "1 needs input" in status.shown_text
                    or "? 1 input" in status.shown_text)
        table = app.query_one(AgentsTable)
        await until(pilot, lambda: table.rows[:1] == ["executor"])
        shown = table.shown("executor")
        assert shown is not None and shown.state == "needs input" and shown.attention
        # Redraws do not ring again: one bell and one notification for one request.
        for _ in range(5):
            drawn = app.draws
            app._dirty = True
            await until(pilot, lambda d=drawn: app.draws > d)
        assert writes == ["\a\x1b]9;sisyphus: executor asks to use Bash: press a\x07"]
        screen = await opened(pilot)
        text = dialog_text(screen)
        assert "executor asks to use Bash" in text
        assert "Bash is not allowed without asking" in text
        # The input as JSON, its text literal: markup as typed, the escape as \x1b in the
        # JSON's own escaping (never a control character on the screen).
        json_text = str(screen.query_one("#permission-json", Static).render())
        assert '"command": "rm -rf build && echo \'[red]x[/]\' \\u001b[2J\\nsecond line"' \
            in json_text
        assert "\x1b" not in text
        assert screen.query_one("#permission").region.bottom <= size[1]
        await pilot.press("1")
        await until(pilot, lambda: len(answers(log)) == 1)
        (given,) = answers(log)
        assert given["agent"] == "executor" and given["request"] == "toolu_1"
        assert given["decision"] == "allow" and not given["always"] and given["by"] == "human"
        assert given["_actor"] == "human"
        await until(pilot, lambda: banner(app) == "" and dialog(app) is None)
        await until(pilot, lambda: "input" not in status.shown_text)
        assert len(writes) == 1


async def test_a_long_reason_never_pushes_the_answers_off_an_80x24_screen(
        hosted: Path) -> None:
    app = SisyphusApp(db=hosted, clock=lambda: NOW, env=ITERM)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app._caught_up)
        await ask(hosted, reason="\n".join(f"reason line {n}" for n in range(12)),
                  command="\n".join(f"echo {n}" for n in range(40)))
        await until(pilot, lambda: "executor asks to use Bash" in banner(app))
        screen = await opened(pilot)
        await pilot.pause()
        for part in ("#allow-once", "#allow-always", "#deny", "#deny-message"):
            region = screen.query_one(part).region
            assert region.height > 0 and region.bottom <= 24, (part, region)


async def test_several_requests_come_oldest_first_allow_always_then_deny_with_a_message(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = captured(monkeypatch)
    app = SisyphusApp(db=log, clock=lambda: NOW, env={"VTE_VERSION": "7600",
                                                      "TERM": "xterm-256color"})
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app._caught_up)
        await ask(log, "executor", "first", "Bash", "make test")
        await ask(log, "planner", "second", "WebFetch", "https://example.com")
        await until(pilot, lambda: "planner asks to use WebFetch" in banner(app)
                    and "executor asks to use Bash" in banner(app))
        await until(pilot, lambda: "? 2 need input: a" in app.query_one(StatusLine).shown_text)
        # Each request told once, OSC 777 where the terminal (VTE) shows it, not OSC 9.
        await until(pilot, lambda: len(writes) == 2)
        assert writes == ["\a\x1b]777;notify;sisyphus;executor asks to use Bash: press a\x07",
                          "\a\x1b]777;notify;sisyphus;planner asks to use WebFetch: "
                          "press a\x07"]
        screen = await opened(pilot)
        assert (screen.agent, screen.request) == ("executor", "first")
        assert "(1 of 2 waiting)" in dialog_text(screen)
        await pilot.press("2")  # allow always for this run
        # The next one opens by itself.
        await until(pilot, lambda: getattr(dialog(app), "request", None) == "second")
        assert answers(log)[0] | {"_actor": ""} == {
            "agent": "executor", "request": "first", "decision": "allow", "always": True,
            "message": "", "by": "human", "_actor": ""}
        await until(pilot, lambda: "Bash" in app.ledger.agents["executor"].always)
        await pilot.press("3")  # to the message field
        screen = dialog(app)
        assert screen is not None
        field = screen.query_one("#deny-message", Input)
        await until(pilot, lambda: field.has_focus)
        # The answer keys are text there: "1" is typed, not an allow.
        await pilot.press(*"not 1 [b]fetch[/b]", "enter")
        await until(pilot, lambda: len(answers(log)) == 2)
        denied = answers(log)[1]
        assert denied["decision"] == "deny" and denied["message"] == "not 1 [b]fetch[/b]"
        assert denied["agent"] == "planner" and denied["request"] == "second"
        await until(pilot, lambda: banner(app) == "" and dialog(app) is None)
        assert len(writes) == 2


@pytest.mark.parametrize("size", SIZES)
async def test_an_answer_from_another_process_closes_the_dialog_and_the_banner(
        log: Path, size: tuple[int, int]) -> None:
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=size, notifications=True) as pilot:
        await until(pilot, lambda: app._caught_up)
        await ask(log)
        await until(pilot, lambda: "asks to use Bash" in banner(app))
        await opened(pilot)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sisyphus_tui", "answer", "--db", str(log), "executor",
            "deny", "--message", "not now", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        assert process.returncode == 0, err
        await until(pilot, lambda: dialog(app) is None and banner(app) == "")
        # (the toast is posted as the dialog closes: waited for, not read at once)
        await until(pilot, lambda: any("was answered elsewhere: deny by human" in n.message
                                       for n in app._notifications))
        (given,) = answers(log)
        assert given["decision"] == "deny" and given["message"] == "not now"


async def test_escape_leaves_the_request_waiting_and_an_answer_given_first_wins(
        log: Path) -> None:
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await until(pilot, lambda: app._caught_up)
        await ask(log)
        await until(pilot, lambda: "asks to use Bash" in banner(app))
        await opened(pilot)
        await pilot.press("escape")
        await until(pilot, lambda: dialog(app) is None)
        assert answers(log) == [] and "asks to use Bash" in banner(app)
        # Open again; the timeout answers first (the runner's own answer): the dialog
        # closes, and the person's answer is not appended.
        await opened(pilot)
        async with await open_store(log) as store:
            await store.append("PERMISSION_ANSWERED", {
                "agent": "executor", "request": "toolu_1", "decision": "deny",
                "by": "timeout", "message": "no answer within 600s"},
                actor="executor", key="answer:executor:toolu_1")
        await until(pilot, lambda: dialog(app) is None and banner(app) == "")
        # (the toast is posted as the dialog closes: waited for, not read at once)
        await until(pilot, lambda: any("answered elsewhere: deny by timeout" in n.message
                                       for n in app._notifications))
        assert len(answers(log)) == 1


def test_osc777_where_vte_or_urxvt_shows_it_never_twice_nor_through_a_multiplexer() -> None:
    for env in ({"VTE_VERSION": "7600"}, {"TERM": "rxvt-unicode-256color"}):
        assert osc777_supported(env), env
        assert alert("x", env) == "\a\x1b]777;notify;sisyphus;x\x07"
    for env in ({}, {"TERM": "xterm-256color"}, {"VTE_VERSION": "7600", "TMUX": "/t,1,0"},
                {"TERM": "foot", "VTE_VERSION": "1"}):  # foot shows OSC 9: that one only
        assert not osc777_supported(env), env
    sequence = osc777(HOSTILE + "; body")
    body = sequence[len("\x1b]777;notify;sisyphus;"):-1]
    assert body.isprintable() and "\\x1b[2J" in body and sequence.endswith("\x07")
