"""Cancel (x) and restart (R) from the agents pane, each asked first and sent as a
CONTROL through the path wipe and resume take (refused, and said, when the run would not
carry it out); the budget: a toast at its warning, and once exceeded a banner saying the
run is paused by it and how to go on (p sends the unpause)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.modals import ConfirmScreen
from sisyphus_tui.tui.widgets.panes import AgentsTable, StatusLine
from tests.tui.conftest import NOW
from tests.tui.test_app import controls, until

SIZES = [(120, 40), (80, 24)]


def notes(app: SisyphusApp) -> list[str]:
    return [n.message for n in app._notifications]


def banner(app: SisyphusApp) -> str:
    widget = app.query_one("#needs-you", Static)
    return str(widget.render()) if widget.has_class("visible") and widget.display else ""


async def append(db: Path, type_: str, payload: dict[str, Any], actor: str = "swarm") -> int:
    async with await open_store(db) as store:
        return await store.append(type_, payload, actor=actor)


async def question(pilot: Any, key: str) -> str:
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    screen = pilot.app.screen
    assert isinstance(screen, ConfirmScreen)
    return screen.question


@pytest.mark.parametrize("size", SIZES)
async def test_x_cancels_the_turn_and_R_restarts_it_each_asked_first(
        log: Path, size: tuple[int, int]) -> None:
    await append(log, "TURN_STARTED", {"agent": "executor", "message": 14, "attempt": 1,
                                       "backend": "claude", "prompt_sha256": "0" * 64},
                 actor="executor")
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=size, notifications=True) as pilot:
        await until(pilot, lambda: app._caught_up)
        await pilot.press("1")
        table = app.query_one(AgentsTable)
        await until(pilot, lambda: table.selected == "executor")
        # Not cancelled: R is refused and said, nothing appended.
        await pilot.press("R")
        await until(pilot, lambda: any("executor is not cancelled" in n for n in notes(app)))
        assert controls(log) == []
        for no in ("n", "escape"):
            assert await question(pilot, "x") == "Cancel executor's turn?"
            # What it does is said whole: wrapped in the box, never cut at its edge.
            await pilot.pause()
            detail = app.screen.query_one(".detail")
            said = str(detail.render())
            assert "R restarts the turn from its checkpoint" in said
            assert detail.region.width * detail.region.height >= len(said), detail.region
            assert detail.region.right <= size[0]
            await pilot.press(no)
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert controls(log) == []
        await question(pilot, "x")
        await pilot.press("y")
        await until(pilot, lambda: len(controls(log)) == 1)
        (sent,) = controls(log)
        assert (sent["action"], sent["agent"]) == ("cancel", "executor") and sent["reason"]
        await until(pilot, lambda: any(n.startswith("cancel of executor requested (offset ")
                                       for n in notes(app)))
        # The host carries it out: now there is a turn to restart.
        await append(log, "AGENT_CANCELLED", {"agent": "executor", "message": 14,
                                              "how": "sigint"})
        await until(pilot, lambda: app.ledger.agents["executor"].state == "cancelled")
        await pilot.press("x")  # cancelled already: refused, said
        await until(pilot, lambda: any("cancelled already" in n for n in notes(app)))
        assert await question(pilot, "R") == "Restart executor's turn?"
        await pilot.press("y")
        await until(pilot, lambda: len(controls(log)) == 2)
        assert (controls(log)[1]["action"], controls(log)[1]["agent"]) == (
            "restart", "executor")


@pytest.mark.parametrize("size", SIZES)
async def test_a_budget_warns_then_pauses_the_run_and_says_how_to_go_on(
        log: Path, size: tuple[int, int]) -> None:
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=size, notifications=True) as pilot:
        await until(pilot, lambda: app._caught_up)
        await append(log, "BUDGET", {"level": "warn", "agent": None, "spent_usd": 4.1,
                                     "limit_usd": 5.0})
        await until(pilot, lambda: "the run spent $4.10 of its $5.00 budget" in notes(app))
        (toast,) = [n for n in app._notifications if n.title == "budget"]
        assert toast.severity == "warning"
        assert banner(app) == ""
        await append(log, "BUDGET", {"level": "exceeded", "agent": "executor",
                                     "spent_usd": 5.02, "limit_usd": 5.0})
        await append(log, "CONTROL", {"action": "pause", "reason": "budget exceeded"},
                     actor="swarm")
        await until(pilot, lambda: "the run is paused by its budget (executor spent $5.02 "
                    "of $5.00): raise the budget in the config, or press p to go on"
                    in banner(app))
        await until(pilot, lambda: "PAUSED" in app.query_one(StatusLine).shown_text)
        await pilot.press("p")
        await until(pilot, lambda: controls(log)[-1]["action"] == "unpause")
        await until(pilot, lambda: banner(app) == "")
        # A budget under a dollar is said in four decimals, not as $0.00 of $0.01.
        await append(log, "BUDGET", {"level": "exceeded", "agent": None, "spent_usd": 0.0052,
                                     "limit_usd": 0.005})
        await until(pilot, lambda: "(the run spent $0.0052 of $0.0050)" in banner(app))


async def test_a_budget_exceeded_long_ago_and_gone_on_from_is_no_banner(log: Path) -> None:
    await append(log, "BUDGET", {"level": "exceeded", "agent": None, "spent_usd": 5.5,
                                 "limit_usd": 5.0})
    await append(log, "CONTROL", {"action": "pause", "reason": "budget"})
    await append(log, "CONTROL", {"action": "unpause", "reason": "budget raised"})
    app = SisyphusApp(db=log, clock=lambda: NOW)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await until(pilot, lambda: app._caught_up and app.ledger.offset == 23)
        drawn = app.draws
        app._dirty = True
        await until(pilot, lambda: app.draws > drawn)
        assert banner(app) == "" and app.budget_stop is None
        assert not any(n.startswith("the run spent") for n in notes(app))  # not live
