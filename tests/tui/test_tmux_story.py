"""The demo's story read off a real terminal: ``sisyphus demo`` at its default (paced)
speed in tmux, as a person watching it would see it. At 120x40: the first plan rejected
by precedent, the revised plan approved, a wipe of the executor from the agents pane (the
row going ``wiped``, then ``resumed`` with its checkpoint, and the stream's marker rows),
the run done and ``q`` leaving with 0. At 80x24: which pane shows, the status line's
PAUSED and following, a footer of whole keys."""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from sisyphus_tui.tui.commands import ACTIONS
from sisyphus_tui.tui.widgets.event_stream import EventStream
from tests.tui.test_tmux import (
    RUN_DEADLINE_S,
    START_DEADLINE_S,
    STEP_DEADLINE_S,
    Tmux,
    agent_rows,
    footer,
    in_pane,
    pane,
    select_agent,
)

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed: these tests read the real "
                                "app off a tmux pane")

STREAM = "[2] stream"
# A stream row: offset, time, actor, the event's story (cut at the pane's width).
ROW = re.compile(r"^ *(\d+) \d\d:\d\d:\d\d (\S+) +(.*?) *$")
# The selected event's header under the rows: ``─ @40 REVIEW validator 20:38:54 ──``.
DETAIL = re.compile(r"^─ @(\d+) (\S+) ")


def story_argv(tmp_path: Path) -> list[str]:
    """The demo as a person starts it: no --speed (the watch speed, paced)."""
    return [sys.executable, "-m", "sisyphus_tui", "demo", "--db", str(tmp_path / "swarm.db"),
            "--workspace", str(tmp_path / "ws")]


@pytest.fixture
def story(tmp_path: Path) -> Iterator[Tmux]:
    tmux = Tmux(in_pane(story_argv(tmp_path)), tmp_path)
    try:
        yield tmux
    finally:
        tmux.kill()


def status(screen: str) -> str:
    """The status line: the screen's first line."""
    return screen.splitlines()[0] if screen else ""


def stream_rows(screen: str) -> list[tuple[int, str, str]]:
    """The stream pane's rows on ``screen``: (offset, actor, story)."""
    return [(int(m[1]), m[2], m[3]) for line in pane(screen, STREAM)
            if (m := ROW.match(line))]


def row_with(screen: str, story: str, actor: str | None = None
             ) -> tuple[int, str, str] | None:
    """The stream's row whose story starts with ``story`` (by ``actor``, if given), if it
    is on the screen."""
    return next((row for row in stream_rows(screen) if row[2].startswith(story)
                 and actor in (None, row[1])), None)


def detail(screen: str) -> tuple[int | None, str]:
    """The selected event's offset (from the header under the rows) and the text written
    out below it, on one line."""
    lines = pane(screen, STREAM)
    for i, line in enumerate(lines):
        found = DETAIL.match(line)
        if found:
            return int(found[1]), " ".join(" ".join(lines[i + 1:]).split())
    return None, ""


def moved(offset: int, screen: str) -> bool:
    """Whether the selected event on ``screen`` is another than the one at ``offset``."""
    return detail(screen)[0] != offset


def select_event(tmux: Tmux, offset: int, deadline_s: float) -> str:
    """Move the stream's cursor (the pane focused) to the event at ``offset``, a key at a
    time, each key seen to move the selection before the next."""
    deadline = time.monotonic() + deadline_s
    while True:
        screen = tmux.screen()
        selected, _ = detail(screen)
        if selected == offset:
            return screen
        if selected is None or time.monotonic() > deadline:
            pytest.fail(f"the event at {offset} was never selected within {deadline_s:g}s; "
                        f"the screen shows:\n{screen}")
        tmux.keys("Up" if selected > offset else "Down")
        tmux.wait_for(partial(moved, selected), "the stream's cursor moving",
                      STEP_DEADLINE_S)


def executor_row(screen: str) -> tuple[str, str]:
    """The executor's state and the line under its row (what it does now)."""
    lines = pane(screen, "[1] agents")
    for i, line in enumerate(lines):
        found = re.match(r"[ ▸][ !]executor +(no host|\S+)", line)
        if found:
            under = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return found[1], under
    return "", ""


def test_the_demo_story_on_a_real_screen(story: Tmux) -> None:
    # The first plan, rejected by precedent: its review's row in the stream.
    screen = story.wait_for(lambda s: row_with(s, "review of plan-1: needs_changes")
                            is not None, "plan-1's rejection", START_DEADLINE_S)
    review = row_with(screen, "review of plan-1: needs_changes")
    assert review is not None and review[1] == "validator", screen
    # The precedent is the review's reason: the row is cut, the selected event's text
    # under the rows is whole. The stream has the focus at the start.
    story.wait_for(lambda s: "Payload" in footer(s), "the stream pane focused",
                   STEP_DEADLINE_S)
    screen = select_event(story, review[0], STEP_DEADLINE_S)
    offset, text = detail(screen)
    assert re.search(r"review of plan-1: needs_changes - .*precedent #\d+", text), screen
    assert "scrolled" in status(screen)  # (the cursor left the tail)
    story.keys("f")
    story.wait_for(lambda s: "following" in status(s), "the stream following again",
                   STEP_DEADLINE_S)

    # The revised plan, approved.
    screen = story.wait_for(lambda s: any(re.match(r"review of plan-\d+: approve", r[2])
                                          for r in stream_rows(s)),
                            "the revised plan's approval", START_DEADLINE_S)
    approvals = [r for r in stream_rows(screen) if re.match(r"review of plan-\d+: approve",
                                                           r[2])]
    assert approvals[0][0] > review[0] and "plan-1" not in approvals[0][2], screen

    # A wipe of the executor while it works, from the agents pane: asked, then sent.
    story.wait_for(lambda s: "phase: execute" in status(s), "phase: execute",
                   START_DEADLINE_S)
    story.keys("1")
    story.wait_for(lambda s: "Payload" not in footer(s), "the agents pane focused",
                   STEP_DEADLINE_S)
    select_agent(story, "executor", STEP_DEADLINE_S)
    story.keys("w")
    story.wait_for(lambda s: "Wipe executor's context?" in s, "the wipe's question",
                   STEP_DEADLINE_S)
    story.keys("y")
    story.wait_for(lambda s: re.search(r"wipe of executor requested \(offset \d+\)", s)
                   is not None, "the wipe's notification", STEP_DEADLINE_S)

    # The row reads wiped, then resumed with its checkpoint (each shown for seconds,
    # far longer than a poll).
    story.wait_for(lambda s: executor_row(s)[0] == "wiped", "the executor wiped",
                   STEP_DEADLINE_S)
    screen = story.wait_for(lambda s: executor_row(s)[0] == "resumed",
                            "the executor resumed", STEP_DEADLINE_S)
    # (At 120 columns the pane cuts the line after the checkpoint: "@0 …".)
    assert re.match(r"resumed from checkpoint @\d+\b", executor_row(screen)[1]), screen
    # The stream's marker rows (it follows the tail; the detail has the cut rest).
    screen = story.wait_for(
        lambda s: row_with(s, "executor: context wiped") is not None
        and row_with(s, "resumed from", "executor") is not None,
        "the wipe's and the resume's rows", STEP_DEADLINE_S)
    wiped, resumed = (row_with(screen, "executor: context wiped"),
                      row_with(screen, "resumed from", "executor"))
    assert wiped is not None and resumed is not None and wiped[0] < resumed[0], screen

    # The run carries on to its end; q leaves with 0 (done, every gate passed).
    story.wait_for(lambda s: "phase: done" in status(s) and "steps 4/4" in status(s),
                   "phase: done", RUN_DEADLINE_S)
    story.wait_for(lambda s: executor_row(s)[0] == "done", "the executor done",
                   STEP_DEADLINE_S)
    story.keys("q")
    screen = story.wait_for(lambda s: re.search(r"^EXIT=\d+", s, re.MULTILINE) is not None,
                            "the app's exit", STEP_DEADLINE_S)
    assert re.search(r"^EXIT=0$", screen, re.MULTILINE), screen


def footer_keys() -> set[tuple[str, str]]:
    """Every (key, label) a footer may show whole: the app's, and the stream pane's."""
    keys = {(a.display or a.keys.split(",")[0], a.label) for a in ACTIONS if a.label}
    for binding in EventStream.BINDINGS:
        assert not isinstance(binding, tuple)
        if binding.show:
            keys.add(({"enter": "⏎"}.get(binding.key, binding.key), binding.description))
    return keys


def whole_keys(line: str) -> list[tuple[str, str]] | None:
    """The footer's (key, label) pairs, or None if it is not made of whole ones: pairs
    each known, then the palette's key at the right."""
    keys, bar, palette = line.rstrip().partition("▏")
    words = keys.split()
    pairs = list(zip(words[::2], words[1::2], strict=False))
    known = footer_keys()
    if bar != "▏" or palette != "^p palette" or len(words) % 2 or any(
            pair not in known for pair in pairs):
        return None
    return pairs


def test_the_demo_at_80x24_says_which_pane_and_what_the_run_does(tmp_path: Path) -> None:
    tui = Tmux(in_pane(story_argv(tmp_path)), tmp_path, width=80, height=24)
    try:
        # One pane at a time, titled; the stream first.
        screen = tui.wait_for(lambda s: STREAM in s and "phase:" in status(s),
                              "the stream pane, titled", START_DEADLINE_S)
        assert "following" in status(screen), screen
        screen = tui.wait_for(lambda s: whole_keys(footer(s)) is not None,
                              "a footer of whole keys", STEP_DEADLINE_S)
        pairs = whole_keys(footer(screen))
        assert pairs is not None and ("q", "quit") in pairs and ("1-4", "panes") in pairs, \
            screen

        # Paused: the status line says so, following still shown at 80 columns.
        tui.keys("p")
        screen = tui.wait_for(lambda s: "PAUSED" in status(s), "PAUSED", STEP_DEADLINE_S)
        assert "following" in status(screen), screen
        assert len(status(screen).rstrip()) <= 80

        # Another pane: its title and its own keys, still whole.
        tui.keys("1")
        screen = tui.wait_for(lambda s: "[1] agents" in s and STREAM not in s,
                              "the agents pane", STEP_DEADLINE_S)
        assert agent_rows(screen), screen
        assert whole_keys(footer(screen)) is not None, screen
        assert "PAUSED" in status(screen), screen

        # Left paused, mid-run: q says so in the exit code (130: interrupted).
        tui.keys("q")
        screen = tui.wait_for(lambda s: re.search(r"^EXIT=\d+", s, re.MULTILINE)
                              is not None, "the app's exit", STEP_DEADLINE_S)
        assert re.search(r"^EXIT=130$", screen, re.MULTILINE), screen
    finally:
        tui.kill()
