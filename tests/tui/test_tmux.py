"""End to end in a real terminal: ``sisyphus demo`` in tmux, driven by keys, read off the
screen. A wipe from the agents pane is seen on screen and in the log, the run finishes,
``q`` quits with 0, and the workspace's ledger says the run is done."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed: the end-to-end test drives "
                                "the real app in a tmux pane")

WIDTH, HEIGHT = 120, 40
POLL_S = 0.2
START_DEADLINE_S = 60.0
STEP_DEADLINE_S = 30.0
RUN_DEADLINE_S = 180.0


class Tmux:
    """One detached tmux session on a private server, its socket in ``cwd``, so no other
    tmux is touched and nothing is left behind."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.socket = str(cwd / "tmux.sock")
        self.session = "demo"
        # Without $TMUX: a test run from inside tmux must still start its own server.
        self.env = {k: v for k, v in os.environ.items() if k != "TMUX"} | {
            "TERM": "xterm-256color"}
        self.screens: list[str] = []
        self._tmux("new-session", "-d", "-s", self.session, "-x", str(WIDTH),
                   "-y", str(HEIGHT), "-c", str(cwd), command)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", self.socket, *args], env=self.env,
                              capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    def screen(self) -> str:
        """The pane's text now; every capture is kept, for the failure messages."""
        text = self._tmux("capture-pane", "-p", "-t", self.session)
        if not self.screens or self.screens[-1] != text:
            self.screens.append(text)
        return text

    def keys(self, *keys: str) -> None:
        """Type ``keys`` (tmux key names: ``Up``, ``q``, ...) into the pane."""
        for key in keys:
            self._tmux("send-keys", "-t", self.session, key)

    def wait_for(self, condition: Callable[[str], bool], what: str,
                 deadline_s: float) -> str:
        """Poll the screen until ``condition`` holds; fail with the last screen if it never
        does within ``deadline_s``."""
        deadline = time.monotonic() + deadline_s
        while True:
            text = self.screen()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"the screen never showed {what} within {deadline_s:g}s; "
                            f"it shows:\n{text}")
            time.sleep(POLL_S)

    def kill(self) -> None:
        """End the session's server (and the app, if it still runs)."""
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], env=self.env,
                       capture_output=True, timeout=10, check=False)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Tmux]:
    """``sisyphus demo`` in a 120x40 tmux pane; the shell prints its exit code after it."""
    argv = [sys.executable, "-m", "sisyphus_tui", "demo", "--db", str(tmp_path / "swarm.db"),
            "--workspace", str(tmp_path / "ws"), "--speed", "0.3"]
    # Textual draws on stderr: it goes to the pane, never redirected.
    command = f"{shlex.join(argv)}; echo EXIT=$?; sleep 600"
    tmux = Tmux(command, tmp_path)
    try:
        yield tmux
    finally:
        tmux.kill()


def events_of(db: Path, type_: str, agent: str) -> list[int]:
    """Offsets of the ``type_`` events about ``agent``, read while the app writes."""
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(
            "SELECT \"offset\" FROM events WHERE type = ? "
            "AND json_extract(payload, '$.agent') = ? ORDER BY \"offset\"",
            (type_, agent)).fetchall()
    conn.close()
    return [offset for (offset,) in rows]


def footer(screen: str) -> str:
    """The bottom line: the keys of the focused pane and the app."""
    return screen.rstrip("\n").splitlines()[-1]


def shown(screens: list[str], pattern: str) -> bool:
    """Whether any captured screen matched ``pattern``."""
    return any(re.search(pattern, text, re.MULTILINE) for text in screens)


def test_demo_in_tmux_wipe_resume_and_quit(demo: Tmux, tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    demo.wait_for(lambda s: "phase: execute" in s, "phase: execute", START_DEADLINE_S)

    # Focus moves after the key is handled: arrows typed before it would scroll the
    # stream. The footer shows the focus: its "Payload" key belongs to the stream.
    assert "Payload" in footer(demo.screen())
    demo.keys("1")
    demo.wait_for(lambda s: "Payload" not in footer(s), "the agents pane focused",
                  STEP_DEADLINE_S)
    # Sorted by name, the executor is the first row: the cursor stops at the top.
    demo.keys(*["Up"] * 8)
    demo.wait_for(lambda s: "inbox of executor" in s, "the executor selected",
                  STEP_DEADLINE_S)
    seen_from = len(demo.screens) - 1

    demo.keys("w")
    demo.wait_for(lambda s: "wipe executor requested" in s,
                  "the wipe's notification", STEP_DEADLINE_S)

    # The log is the truth of what happened; the screen must have shown those very
    # events (their offsets) in the stream pane. Rows stay on screen for seconds, far
    # longer than the poll interval.
    deadline = time.monotonic() + STEP_DEADLINE_S
    while True:
        demo.screen()
        wiped, resumed = events_of(db, "CONTEXT_WIPED", "executor"), events_of(
            db, "RESUMED", "executor")
        after = demo.screens[seen_from:]
        if (wiped and resumed
                and shown(after, rf"\b{wiped[0]} \d\d:\d\d:\d\d swarm +CONTEXT_WIPE")
                and shown(after, rf"\b{resumed[0]} \d\d:\d\d:\d\d executor +RESUMED\b")):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"wipe/resume not seen: CONTEXT_WIPED at {wiped}, RESUMED at "
                        f"{resumed} in the log; the screen shows:\n{demo.screens[-1]}")
        time.sleep(POLL_S)
    assert len(wiped) == 1 and len(resumed) == 1
    assert wiped[0] < resumed[0]

    demo.wait_for(lambda s: "phase: done" in s, "phase: done", RUN_DEADLINE_S)
    final = demo.wait_for(lambda s: "steps 4/4" in s, "steps 4/4", STEP_DEADLINE_S)
    assert re.search(r"^│[ ▸]executor +done\b", final, re.MULTILINE), final

    demo.keys("q")
    demo.wait_for(lambda s: re.search(r"^EXIT=\d+", s, re.MULTILINE) is not None,
                  "the app's exit", STEP_DEADLINE_S)
    assert re.search(r"^EXIT=0$", demo.screens[-1], re.MULTILINE), demo.screens[-1]

    ledger = (tmp_path / "ws" / "SISYPHUS_LEDGER.md").read_text(encoding="utf-8")
    assert "**Phase:** done" in ledger
