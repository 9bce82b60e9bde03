"""Supervising an agent in a real terminal: ``sisyphus tui`` attached to a log in tmux,
read off the screen. A permission request shows in the banner and the status line; ``a``
opens its dialog (the tool, its input as written, the three answers, all on the screen
at 120x40 and 80x24); ``2`` allows it for the rest of the run (the answer in the log); a
second request answered by ``sisyphus answer`` from another shell goes from the screen;
enter on the agent opens its transcript, escape comes back; ``q`` exits 0."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.fixtures import build_log, insert_events
from tests.tui.test_tmux import START_DEADLINE_S, STEP_DEADLINE_S, Tmux, footer, in_pane

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed: these tests read the real "
                                "app off a tmux pane")

SIZES = [(120, 40), (80, 24)]


def asking(agent: str, request_id: str, tool: str, command: str
            ) -> tuple[str, str, None, dict[str, object]]:
    return ("PERMISSION_REQUESTED", agent, None, {
        "agent": agent, "request": request_id, "message": 14, "tool": tool,
        "input": {"command": command}, "reason": "a shell command", "timeout_s": 900,
        "on_timeout": "deny"})


@pytest.fixture(params=SIZES, ids=["120x40", "80x24"])
def attached(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:
    db = tmp_path / "swarm.db"
    build_log(db)
    insert_events(db, [
        ("TURN_STARTED", "executor", None, {"agent": "executor", "message": 14,
                                            "attempt": 1, "backend": "claude",
                                            "prompt_sha256": "0" * 64}),
        ("AGENT_OUTPUT", "executor", None, {"agent": "executor", "message": 14,
                                            "sequence": 0, "kind": "text",
                                            "text": "I will run the tests [b]now[/b]"}),
        asking("executor", "r1", "Bash", "make test [red]x[/]")])
    width, height = request.param
    argv = [sys.executable, "-m", "sisyphus_tui", "tui", "--db", str(db)]
    tmux = Tmux(in_pane(argv), tmp_path, width=width, height=height)
    try:
        yield tmux, db
    finally:
        tmux.kill()


def answers(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'PERMISSION_ANSWERED' "
                            'ORDER BY "offset"').fetchall()
    conn.close()
    return [json.loads(p) for (p,) in rows]


def test_a_request_answered_in_the_dialog_and_another_from_a_shell(
        attached: tuple[Tmux, Path]) -> None:
    tmux, db = attached
    tmux.wait_for(lambda s: "executor asks to use Bash: press a" in s, "the banner",
                  START_DEADLINE_S)
    screen = tmux.wait_for(lambda s: "need" in s.splitlines()[0] or "input" in
                           s.splitlines()[0], "the status line's needs input",
                           STEP_DEADLINE_S)
    assert "1" in screen.splitlines()[0]
    tmux.keys("a")
    screen = tmux.wait_for(lambda s: "Allow once (1)" in s and "Deny (3)" in s,
                           "the dialog and its answers", STEP_DEADLINE_S)
    assert '"command": "make test [red]x[/]"' in screen  # as written, never markup
    assert "a shell command" in screen and "Allow always, this run (2)" in screen
    tmux.keys("2")
    tmux.wait_for(lambda s: "Allow once (1)" not in s and "press a" not in s,
                  "the dialog and the banner gone", STEP_DEADLINE_S)
    (given,) = answers(db)
    assert given["decision"] == "allow" and given["always"] is True
    # A second request, answered from another shell: it goes from the screen.
    insert_events(db, [asking("executor", "r2", "WebFetch", "curl example.com")])
    tmux.wait_for(lambda s: "executor asks to use WebFetch: press a" in s,
                  "the second request", STEP_DEADLINE_S)
    done = subprocess.run([sys.executable, "-m", "sisyphus_tui", "answer", "--db", str(db),
                           "executor", "deny", "--message", "not from here"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    tmux.wait_for(lambda s: "press a" not in s, "the answered request gone",
                  STEP_DEADLINE_S)
    # The transcript: what it said, what it asked, how it was answered.
    tmux.keys("1")
    tmux.wait_for(lambda s: "Payload" not in footer(s), "the agents pane focused",
                  STEP_DEADLINE_S)  # (the stream's enter opens an event instead)
    tmux.keys("Enter")
    said = (" transcript ", "I will run the tests [b]now[/b]", "? asks to use Bash",
            "allowed always", "✗ denied by human")
    tmux.wait_for(lambda s: all(text in s for text in said), "the executor's transcript",
                  STEP_DEADLINE_S)
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "[1] agents" in s and " transcript " not in s,
                  "the main screen again", STEP_DEADLINE_S)
    tmux.keys("q")
    tmux.wait_for(lambda s: "EXIT=0" in s, "q exiting 0", STEP_DEADLINE_S)
