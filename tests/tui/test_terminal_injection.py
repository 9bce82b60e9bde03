"""Escape sequences in the log never reach a real terminal: the app, attached to a log
holding an OSC 2 (set the window title) in one field, runs in tmux; the pane's title
stays tmux's and the screen shows the sequence as text. One run per field that has
reached the terminal: each pane, the status line, the wipe's question, a notification."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.stream import open_store
from tests.tui.fixtures import T0, insert_events
from tests.tui.test_tmux import START_DEADLINE_S, STEP_DEADLINE_S, Tmux, footer, in_pane

OSC2 = "\x1b]2;pwned\x07"
SHOWN = r"\x1b]2;pwned\x07"


def hostile_log(path: Path, where: str) -> None:
    """A short log (its ledger fits the pane) with OSC2 in the field ``where``."""

    def field(name: str, benign: str) -> Any:
        return OSC2 if name == where else benign

    async def create() -> None:
        async with await open_store(path):
            pass

    asyncio.run(create())
    insert_events(path, [
        ("TASK_INIT", "human", None, {"goal": "g", "spec": {}}),
        # Spawned, so a wipe of it is one the swarm would carry out: asked, then sent.
        ("AGENT_SPAWNED", "swarm", None, {"agent": field("agent", "agent-1"),
                                          "role": "executor", "skill": None,
                                          "thinking": "off"}),
        (field("type", "x.tool"), "tool", None, {}),
        ("STATUS_UPDATE", "swarm", None, {"agent": field("agent", "agent-1"),
                                          "state": field("state", "idle")}),
        # (A phase outside the six is skipped by the fold: its reason is free text.)
        ("PHASE", "kernel", None, {"phase": "plan", "reason": field("phase", "")}),
        ("REVIEW", field("review actor", "validator"), None,
         {"plan_id": field("plan_id", "plan-1"), "verdict": "approve"}),
    ], ts=T0)


@pytest.mark.parametrize("where", ["type", "state", "agent", "phase", "review actor",
                                   "plan_id"])
def test_no_escape_sequence_from_the_log_reaches_the_terminal(tmp_path: Path,
                                                              where: str) -> None:
    db = tmp_path / "swarm.db"
    hostile_log(db, where)
    tui = Tmux(in_pane([sys.executable, "-m", "sisyphus_tui", "tui", "--db", str(db)]),
               tmp_path)
    try:
        before = tui.title()
        # The ledger pane renders in a thread: wait for its Reviews line.
        tui.wait_for(lambda s: "round 1" in s and "Payload" in footer(s),
                     "the app showing the log", START_DEADLINE_S)
        # Bookkeeping too (the status update, the state's one place on a log nothing
        # hosts: its agent reads "no host"), so every row of the log reaches the terminal.
        tui.keys("b")
        tui.wait_for(lambda s: "4 08:00:03 swarm" in s, "the bookkeeping rows",
                     STEP_DEADLINE_S)
        # Wipe the only agent: the question and the notification name it. A name that
        # breaks the agent-name rule is no agent of the run: the refusal names it instead.
        tui.keys("1")
        tui.wait_for(lambda s: "Payload" not in footer(s), "the agents pane focused",
                     STEP_DEADLINE_S)
        tui.keys("w")
        screen = tui.wait_for(lambda s: re.search(r"Wipe \S+ context\?|unknown agent", s)
                              is not None, "the wipe's question", STEP_DEADLINE_S)
        if "unknown agent" not in screen:
            tui.keys("y")
            screen = tui.wait_for(
                lambda s: re.search(r"wipe of \S+ requested \(offset \d+\)", s) is not None,
                "the wipe's notification", STEP_DEADLINE_S)
        title = tui.title()
        assert title == before, (
            f"the pane's title became {title!r}: the {where} field's sequence reached the "
            f"terminal; the screen shows:\n{screen}")
        assert SHOWN in screen or SHOWN[:-4] in screen, screen  # (a column may cut it)
    finally:
        tui.kill()
