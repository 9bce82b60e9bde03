"""'Needs you' and 'recovered': the banner while a human gate waits (with the bell, and
OSC 9 where the terminal shows it, read off what the app writes to its terminal), the
recovery banner after a host resumed an interrupted run, a control request the host
refused or a blocked run said in a toast on one line, and 'no host' for an app attached
to a swarm nothing runs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.drivers.headless_driver import HeadlessDriver
from textual.widgets import Static

from sisyphus_tui.errors import HostFault
from sisyphus_tui.stream import open_store
from sisyphus_tui.stream.lease import HostLease
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.terminal_alert import alert, osc9, osc9_supported
from sisyphus_tui.tui.widgets.panes import AgentsTable, StatusLine
from tests.tui.conftest import NOW
from tests.tui.fixtures import HOSTILE, T0
from tests.tui.test_app import controls, until

SIZES = [(120, 40), (80, 24)]
ITERM = {"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}


def insert(db: Path, type_: str, actor: str, payload: dict[str, Any], ts: float) -> None:
    """An event as a host would have written it, at ``ts`` (the store stamps now)."""
    conn = sqlite3.connect(db)
    conn.execute('INSERT INTO events (type, actor, "to", payload, ts) VALUES (?, ?, NULL, ?, ?)',
                 (type_, actor, json.dumps(payload), ts))
    conn.commit()
    conn.close()


def wait_for_signoff(db: Path) -> None:
    """The run reaches its gates and the kernel's checkpoint says it waits for signoff."""
    insert(db, "PHASE", "kernel", {"phase": "gates", "reason": "plan done"}, T0 + 20)
    insert(db, "CHECKPOINT", "kernel", {"agent": "kernel", "cursor": 0, "step": None,
                                        "state": {"waiting_gate": "signoff"}}, T0 + 21)


def captured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What apps write to their (headless) terminal driver from now on, but frames."""
    writes: list[str] = []

    def write(driver: HeadlessDriver, data: str) -> None:
        if data.startswith("\a") or "\x1b]9;" in data:  # the bell, OSC 9 (not OSC 22...)
            writes.append(data)

    monkeypatch.setattr(HeadlessDriver, "write", write)
    return writes


async def redrawn(pilot: Any, app: SisyphusApp, times: int = 3) -> None:
    """Let the app redraw its panes ``times`` more times: each redraw looks at what the
    run needs and may ring the bell (or show a banner) again."""
    for _ in range(times):
        drawn = app.draws
        app._dirty = True
        await until(pilot, lambda d=drawn: app.draws > d)


def messages(app: App[Any]) -> list[str]:
    return [n.message for n in app._notifications]


def banner(app: SisyphusApp, name: str) -> str:
    widget = app.query_one(f"#{name}", Static)
    return str(widget.render()) if widget.has_class("visible") and widget.display else ""


@pytest.mark.parametrize("size", SIZES)
async def test_a_waiting_gate_shows_a_banner_rings_once_and_goes_when_approved(
        log: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    writes = captured(monkeypatch)
    app = SisyphusApp(db=log, clock=lambda: NOW, env=ITERM)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.ledger.offset == 20 and app._caught_up)
        await redrawn(pilot, app)
        assert banner(app, "needs-you") == "" and writes == []
        wait_for_signoff(log)
        await until(pilot, lambda: "signoff needs your approval: press a"
                    in banner(app, "needs-you"))
        # On the screen, under the status line, at this size too.
        await until(pilot, lambda: app.query_one("#needs-you").region.height > 0)
        region = app.query_one("#needs-you").region
        assert region.y == 1 and region.height == 1 and region.width == size[0]
        # What could ring it again: the kernel saying again that it waits, other events,
        # the redraws they cause. Still one bell, one notification.
        insert(log, "CHECKPOINT", "kernel", {"agent": "kernel", "cursor": 0, "step": None,
                                             "state": {"waiting_gate": "signoff"}}, T0 + 22)
        insert(log, "STATUS_UPDATE", "executor", {"agent": "executor", "state": "idle"},
               T0 + 23)
        await until(pilot, lambda: app.ledger.offset == 24)
        await redrawn(pilot, app, times=5)
        assert "signoff needs your approval" in banner(app, "needs-you")
        assert writes == ["\a\x1b]9;sisyphus: signoff needs your approval: press a\x07"]
        await pilot.press("a")
        await until(pilot, lambda: banner(app, "needs-you") == "")
        assert controls(log)[-1]["action"] == "approve"
        assert controls(log)[-1]["gate"] == "signoff"
        assert len(writes) == 1


async def test_the_bell_alone_where_the_terminal_shows_no_osc9(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wait_for_signoff(log)
    writes = captured(monkeypatch)
    app = SisyphusApp(db=log, clock=lambda: NOW,
                      env={"TERM": "xterm-256color", "TERM_PROGRAM": "Apple_Terminal"})
    async with app.run_test(size=(80, 24)) as pilot:
        # A gate already waiting when the app opens rings too: someone is called back.
        await until(pilot, lambda: "signoff needs" in banner(app, "needs-you"))
        await redrawn(pilot, app, times=5)
        assert writes == ["\a"]


def test_osc9_only_where_a_terminal_shows_it_and_never_through_a_multiplexer() -> None:
    for env in ({"TERM_PROGRAM": "iTerm.app"}, {"TERM_PROGRAM": "WezTerm"},
                {"TERM_PROGRAM": "ghostty"}, {"TERM": "xterm-kitty"}, {"TERM": "foot"},
                {"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}):
        assert osc9_supported(env), env
    for env in ({}, {"TERM": "xterm-256color"}, {"TERM": "screen", "STY": "1.pts"},
                {"TERM_PROGRAM": "tmux", "TERM": "tmux-256color", "TMUX": "/tmp/t,1,0"},
                {"TERM_PROGRAM": "iTerm.app", "TMUX": "/tmp/t,1,0"},
                {"TERM_PROGRAM": "vscode"}, {"WT_SESSION": "x"}):
        assert not osc9_supported(env), env
    assert alert("x", {}) == "\a"


def test_an_osc9_notification_carries_no_escape_of_its_own() -> None:
    sequence = osc9(f"{HOSTILE} \x9c\x1b\\ end" + "x" * 500)
    assert sequence.startswith("\x1b]9;sisyphus: ") and sequence.endswith("\x07")
    body = sequence[len("\x1b]9;"):-1]
    assert body.isprintable(), body
    assert "\\x1b[2J" in body  # shown as an escape, not acted on
    assert len(body) <= 200
    # Never '9;4;...' (ConEmu's progress bar where a terminal reads both).
    assert osc9("4;3;50").startswith("\x1b]9;sisyphus: 4")


class StoppingHost:
    """A host whose run stops on a fault at once (as a setup failure stops it)."""

    run_actor: Any = None
    on_fault: Any = None

    async def run(self) -> None:
        raise HostFault("agent executor failed: [/]setup \x1b]0;pwned\x07\n\x1b[31mtraceback\n"
                        "no login")


@pytest.mark.parametrize("size", SIZES)
async def test_a_host_that_stopped_needs_you_until_the_app_quits(
        tmp_path: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "swarm.db"
    writes = captured(monkeypatch)
    async with await open_store(db) as store:
        app = SisyphusApp(store, host=StoppingHost(), env={"TERM": "xterm-kitty"})
        async with app.run_test(size=size) as pilot:
            # Shown literally: the markup as typed, the escape as \x.. (on one line).
            await until(pilot, lambda: "the host stopped: agent executor failed: [/]setup "
                        "\\x1b]0;pwned\\x07 … no login" in banner(app, "needs-you"))
            await redrawn(pilot, app, times=5)
            assert len(writes) == 1 and writes[0].startswith("\a\x1b]9;sisyphus: the host")
            assert "\x1b[31m" not in writes[0][1:] and "\x1b]0;" not in writes[0][1:]
            assert app.hosted is False  # the app hosted the run; nothing does now


@pytest.mark.parametrize("size", SIZES)
async def test_a_recent_resume_says_where_the_run_resumed_for_a_few_seconds(
        log: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    import sisyphus_tui.tui.app as app_module

    monkeypatch.setattr(app_module, "RECOVERY_BANNER_S", 1.0)
    insert(log, "RUN_RESUMED", "swarm", {"at": 20, "phase": "execute", "done": 2,
                                         "total": 4}, NOW - 5)
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        # The step in hand (two done: the third), in the stream row's words.
        await until(pilot, lambda: "resumed at step 3/4 after an interruption"
                    in banner(app, "recovered"))
        await until(pilot, lambda: app.query_one("#recovered").region.width == size[0])
        await until(pilot, lambda: banner(app, "recovered") == "", timeout_s=5)


async def test_an_old_interruption_is_the_ledgers_story_not_a_banner(log: Path) -> None:
    insert(log, "RUN_RESUMED", "swarm", {"at": 20, "phase": "execute", "done": 2,
                                         "total": 4}, NOW - 3600)
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.ledger.last_interruption is not None
                    and app._caught_up)
        await redrawn(pilot, app)
        assert banner(app, "recovered") == ""


async def test_a_resume_outside_the_steps_names_its_phase(log: Path) -> None:
    insert(log, "RUN_RESUMED", "swarm", {"at": 20, "phase": "plan", "done": 0,
                                         "total": 0}, NOW - 5)
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "resumed in phase plan after an interruption"
                    in banner(app, "recovered"))
        assert "step 0/0" not in banner(app, "recovered")


async def test_a_second_resume_keeps_its_banner_its_own_few_seconds(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sisyphus_tui.tui.app as app_module

    monkeypatch.setattr(app_module, "RECOVERY_BANNER_S", 1.0)
    insert(log, "RUN_RESUMED", "swarm", {"at": 20, "phase": "execute", "done": 1,
                                         "total": 4}, NOW - 5)
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "step 2/4" in banner(app, "recovered"))
        # Due just after the first banner's own timer: once it fired, that timer did.
        after_first = asyncio.Event()
        app.set_timer(1.0, after_first.set)
        monkeypatch.setattr(app_module, "RECOVERY_BANNER_S", 30.0)
        insert(log, "RUN_RESUMED", "swarm", {"at": 22, "phase": "execute", "done": 3,
                                             "total": 4}, NOW - 1)
        await until(pilot, lambda: "step 4/4" in banner(app, "recovered"))
        await until(pilot, after_first.is_set)
        await redrawn(pilot, app)
        assert "resumed at step 4/4 after an interruption" in banner(app, "recovered")


async def test_a_control_request_the_host_refused_is_said_once_it_arrives(
        log: Path) -> None:
    refused = {"agent": "swarm", "state": "refused"}
    insert(log, "STATUS_UPDATE", "swarm", {**refused, "detail": "control 3: long ago"},
           T0 + 20)
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await until(pilot, lambda: app.ledger.offset == 21 and app._caught_up)
        # Another swarm-side status, or another agent refusing a message: not this.
        insert(log, "STATUS_UPDATE", "swarm", {"agent": "swarm", "state": "working"},
               T0 + 21)
        insert(log, "STATUS_UPDATE", "executor", {"agent": "executor", "state": "refused",
                                                  "detail": "message 4 from x: bad"}, T0 + 22)
        insert(log, "STATUS_UPDATE", "swarm", {
            **refused, "detail": "control 22: SisyphusError: no skill 'nope'\n"
                                 "known skills: executor, planner\n[red]x[/]"}, T0 + 23)
        await until(pilot, lambda: any(m.startswith("control 22:") for m in messages(app)))
        said = [n for n in app._notifications if n.title == "refused"]
        assert [n.message for n in said] == [
            "control 22: SisyphusError: no skill 'nope' … [red]x[/]"]  # one line, literal
        assert said[0].severity == "warning" and not said[0].markup
        assert not any("long ago" in m or "message 4" in m for m in messages(app))


async def test_a_request_a_running_host_refuses_is_said(tmp_path: Path) -> None:
    """Past the app's own check (no agent of that name), refused by the host (no such
    skill): the host's answer reaches the screen."""
    from sisyphus_tui.demo.runner import prepare_demo
    from sisyphus_tui.runtime import Swarm

    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        offset = await store.append("CONTROL", {"action": "spawn", "skill": "no-such-skill",
                                                "agent": "helper", "parent": "human"},
                                    actor="human", to="swarm")
        app = SisyphusApp(store, workspace=workspace, host=Swarm(store, workspace, speed=0))
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: any(m.startswith(f"control {offset}: ")
                                           for m in messages(app)), 60)
            said = [m for m in messages(app) if m.startswith(f"control {offset}: ")]
            assert len(said) == 1 and "no-such-skill" in said[0], said
            await until(pilot, lambda: app.outcome is not None, 120)


class BlockedOutcome:
    """What a host's run returns after a verdict blocked it: a test run's output."""

    phase = "blocked"
    phase_reason = ("step 2 failed: tests fail\n============ FAILURES ============\n"
                    "E   assert 1 == 2\n\n=========== 1 failed, 3 passed in 0.21s ===========\n")


class BlockingHost:
    run_actor: Any = None
    on_fault: Any = None

    async def run(self) -> BlockedOutcome:
        return BlockedOutcome()


async def test_a_blocked_run_is_said_on_one_line(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "swarm.db") as store:
        app = SisyphusApp(store, host=BlockingHost())
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: any(m.startswith("the run is blocked")
                                           for m in messages(app)))
            said = [m for m in messages(app) if m.startswith("the run is blocked")]
            assert said == ["the run is blocked: step 2 failed: tests fail … "
                            "1 failed, 3 passed in 0.21s"]


@pytest.mark.parametrize("size", SIZES)
async def test_an_attached_app_says_no_host_until_a_host_takes_the_lease(
        log: Path, size: tuple[int, int]) -> None:
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        table = app.query_one(AgentsTable)
        status = app.query_one(StatusLine)
        await until(pilot, lambda: app.hosted is False and "no host" in str(status.render()))
        await until(pilot, lambda: getattr(table.shown("executor"), "state", "") == "no host")
        lease = await HostLease.acquire(log)
        try:
            await until(pilot, lambda: app.hosted is True
                        and "no host" not in str(status.render()), timeout_s=5)
            await until(pilot, lambda: getattr(table.shown("executor"), "state", "")
                        not in ("", "no host"))
        finally:
            lease.release()
        await until(pilot, lambda: app.hosted is False, timeout_s=5)

