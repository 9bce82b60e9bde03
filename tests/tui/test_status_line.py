"""The status line on a real log at 120 and 80 columns: phase, steps, PAUSED, a human
gate waiting, following or scrolled, the filter and skipped events are never lost; the
gates, the head and the path go first; every state is a word or a mark (NO_COLOR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.tui.widgets.panes import StatusLine
from tests.tui.fixtures import HOSTILE, SPEC, insert_events
from tests.tui.panes_app import SIZES, PaneApp, append, fold

LOCATION = "/home/someone/projects/a-rather-long-folder-name/of-the-demo/swarm.db"
Show = dict[str, Any]


@pytest.fixture
async def gated(tmp_path: Path) -> Path:
    """A run at its human gate (signoff waits), a step of two done, the tests gate red,
    paused, one event no fold can use."""
    db = tmp_path / "swarm.db"
    await append(
        db,
        ("AGENT_SPAWNED", {"agent": "kernel", "role": "kernel"}, "swarm", None),
        ("AGENT_SPAWNED", {"agent": "executor", "role": "executor"}, "kernel", None),
        ("TASK_INIT", {"goal": "Refactor the SQL", "spec": SPEC}, "human", "kernel"),
        ("PLAN_INIT", {"plan_id": "plan-1", "summary": "s", "approach": "a", "revision": 1,
                       "steps": 2, "precedents": []}, "planner", None),
        *[("PLAN_STEP", {"plan_id": "plan-1", "step": n, "title": f"step {n}", "test": "t",
                         "files": []}, "planner", None) for n in (1, 2)],
        ("REVIEW", {"plan_id": "plan-1", "verdict": "approve", "reasons": [], "round": 1,
                    "precedents": []}, "validator", None),
        ("CHECKPOINT", {"agent": "executor", "cursor": 3, "step": 1}, "executor", None),
        ("GATE_RESULT", {"gate": "tests", "passed": False, "exit_code": 1}, "kernel", None),
        ("PHASE", {"phase": "gates", "reason": ""}, "kernel", None),
        ("CHECKPOINT", {"agent": "kernel", "cursor": 3, "state": {"waiting_gate": "signoff"}},
         "kernel", None),
        ("CONTROL", {"action": "pause"}, "human", None))
    # What another writer left: a status whose state is not text (the store refuses it).
    insert_events(db, [("STATUS_UPDATE", "executor", None,
                        {"agent": "executor", "state": ["not", "text"]})])
    return db


def status_of(**kw: Any) -> tuple[StatusLine, Show]:
    """A status line and what to show it with: scrolled, filtered, caught up (or ``kw``)."""
    show: Show = {"following": False, "filter_text": "agent:executor", "caught_up": True}
    return StatusLine(), show | kw


@pytest.mark.parametrize("size", SIZES)
async def test_what_matters_is_never_lost(gated: Path, size: tuple[int, int]) -> None:
    ledger, head = await fold(gated)
    assert ledger.waiting_for_human() == ["signoff"] and ledger.skipped_count == 1
    line, show = status_of()
    async with PaneApp(line, "1fr", border=False).run_test(size=size) as pilot:
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        text = line.shown_text
        assert len(text) <= size[0]
        # In this order, first: phase, steps, PAUSED, the gate, skipped, scrolled, filter.
        wanted = ["gates", "1/2", "PAUSED", "⏸ signoff", "⚠", "scrolled", "agent:executor"]
        at = [text.find(word) for word in wanted]
        assert -1 not in at, text
        assert at == sorted(at), text
        # The path and the head are what went first.
        assert "head" not in text and "swarm.db" not in text
        if size[0] >= 120:
            # Room for the long forms and the red gate.
            assert "signoff waits for you: a" in text and "⚠ 1 skipped" in text
            assert "filter: agent:executor" in text and "tests ✗" in text
        else:
            assert "⏸ signoff: a" in text and "tests" not in text


async def test_a_wider_terminal_shows_more_again(gated: Path) -> None:
    ledger, head = await fold(gated)
    line, show = status_of(following=True, filter_text="")
    async with PaneApp(line, "1fr", border=False).run_test(size=(80, 24)) as pilot:
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        assert "head" not in line.shown_text and "following" in line.shown_text
        await pilot.resize_terminal(130, 24)
        await pilot.pause()
        text = line.shown_text
        # The path cut from the left: the file's name stays.
        assert f"head {head}" in text and text.rstrip().endswith("swarm.db")
        assert LOCATION not in text and "…" in text
        assert text.index("head") < text.index("swarm.db")
        await pilot.resize_terminal(200, 24)
        await pilot.pause()
        assert line.shown_text.rstrip().endswith(f"head {head}  {LOCATION}")


@pytest.mark.parametrize("size", SIZES)
async def test_no_host_and_reading_the_log_are_said(gated: Path, size: tuple[int, int]
                                                    ) -> None:
    ledger, head = await fold(gated)
    line, show = status_of(caught_up=False, hosted=False)
    async with PaneApp(line, "1fr", border=False).run_test(size=size) as pilot:
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        text = line.shown_text
        assert "no host" in text and "reading" in text and "PAUSED" in text
        # The filter last of what matters: at 80 columns its start, at 120 all of it.
        assert "agent:exec" in text and len(text) <= size[0]
        line.show(LOCATION, ledger, head, **(show | {"hosted": None}))
        await pilot.pause()
        assert "no host" not in line.shown_text


async def test_a_long_hostile_filter_is_shown_literally_and_cut_at_the_end(gated: Path
                                                                          ) -> None:
    ledger, head = await fold(gated)
    line, show = status_of(filter_text=HOSTILE * 3)
    async with PaneApp(line, "1fr", border=False).run_test(size=(80, 24)) as pilot:
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        text = line.shown_text
        assert len(text) == 80 and text.endswith("…")
        assert "\x1b" not in text and "\\x1b[2J" in text
        assert "PAUSED" in text and "scrolled" in text


async def test_readable_with_no_color(gated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    ledger, head = await fold(gated)
    line, show = status_of()
    app = PaneApp(line, "1fr", border=False)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        screen = "".join(s.text for s in app.screen._compositor.render_strips())
        # Words and marks, not colours, say the states.
        for word in ("PAUSED", "⏸ signoff", "scrolled", "⚠"):
            assert word in screen


@pytest.mark.parametrize("size", SIZES)
async def test_the_runs_cost_outlasts_the_gates_marks(gated: Path, size: tuple[int, int]
                                                      ) -> None:
    await append(gated, ("AGENT_OUTPUT", {
        "agent": "executor", "message": 3, "sequence": 0, "kind": "usage",
        "data": {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 0,
                 "cost_usd": 5.1}}, "executor", None))
    ledger, head = await fold(gated)
    line, show = status_of(following=True, filter_text="")
    async with PaneApp(line, "1fr", border=False).run_test(size=size) as pilot:
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        text = line.shown_text
        assert "$5.10" in text and len(text) <= size[0], text


@pytest.mark.parametrize("size", SIZES)
async def test_a_budget_past_80_percent_stays_said(gated: Path, size: tuple[int, int]
                                                   ) -> None:
    await append(gated, ("BUDGET", {"level": "warn", "spent_usd": 4.1, "limit_usd": 5.0},
                         "swarm", None))
    ledger, head = await fold(gated)
    line, show = status_of(following=True, filter_text="")
    async with PaneApp(line, "1fr", border=False).run_test(size=size) as pilot:
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        text = line.shown_text
        assert ("⚠ budget 82%" if size[0] >= 120 else "⚠ budget") in text, text
        await append(gated, ("BUDGET", {"level": "exceeded", "agent": "executor",
                                        "spent_usd": 1.2, "limit_usd": 1.0}, "swarm", None))
        ledger, head = await fold(gated)
        line.show(LOCATION, ledger, head, **show)
        await pilot.pause()
        assert ("⚠ executor's budget spent" if size[0] >= 120 else "⚠ budget") in \
            line.shown_text, line.shown_text
