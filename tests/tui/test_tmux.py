"""End to end in a real terminal: ``sisyphus demo`` in tmux, driven by keys, read off the
screen. A wipe from the agents pane is seen on screen and in the log, the run finishes,
``q`` quits with 0, and the workspace's ledger says the run is done."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
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

    def __init__(self, command: str, cwd: Path, *, width: int = WIDTH,
                 height: int = HEIGHT) -> None:
        self.socket = str(cwd / "tmux.sock")
        self.session = "demo"
        # Without $TMUX: a test run from inside tmux must still start its own server.
        self.env = {k: v for k, v in os.environ.items() if k != "TMUX"} | {
            "TERM": "xterm-256color"}
        self.screens: list[str] = []
        self._tmux("new-session", "-d", "-s", self.session, "-x", str(width),
                   "-y", str(height), "-c", str(cwd), command)

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

    def styled_screen(self) -> str:
        """The pane now with its SGR escape sequences (colours, bold, reverse)."""
        return self._tmux("capture-pane", "-p", "-e", "-t", self.session)

    def title(self) -> str:
        """The pane's title (an OSC 2 sequence written to the pane sets it)."""
        return self._tmux("display", "-p", "-t", self.session, "#{pane_title}").rstrip("\n")

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


def in_pane(argv: list[str], env: str = "") -> str:
    """A pane's shell command: run ``argv``, then print its exit code and stay open."""
    # Textual draws on stderr: it goes to the pane, never redirected.
    return f"{env}{shlex.join(argv)}; echo EXIT=$?; sleep 600"


def demo_argv(tmp_path: Path, speed: str) -> list[str]:
    return [sys.executable, "-m", "sisyphus_tui", "demo", "--db", str(tmp_path / "swarm.db"),
            "--workspace", str(tmp_path / "ws"), "--speed", speed]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Tmux]:
    """``sisyphus demo`` in a 120x40 tmux pane; the shell prints its exit code after it."""
    tmux = Tmux(in_pane(demo_argv(tmp_path, "0.3")), tmp_path)
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


def pane(screen: str, title: str) -> list[str]:
    """The lines inside the box titled ``title`` (``[2] stream``), its border cut off;
    empty if the pane is not on the screen."""
    lines = screen.splitlines()
    for top, line in enumerate(lines):
        start = line.find(f"╭─ {title} ")
        if start < 0:
            continue
        end = line.index("╮", start)
        inner: list[str] = []
        for below in lines[top + 1:]:
            if below[start:start + 1] == "╰":
                break
            inner.append(below[start + 1:end])
        return inner
    return []


def agent_rows(screen: str) -> list[tuple[bool, str, str]]:
    """The agents pane's rows, in order: (selected, name, state). A row is ``▸`` (the
    cursor) or a blank, ``!`` (needs attention) or a blank, the name, the state; the
    line under it (indented) says what the agent does."""
    rows = []
    for line in pane(screen, "[1] agents")[1:]:  # (the first is the column header)
        found = re.match(r"([ ▸])[ !](\S+) +(no host|\S+)", line)
        if found:
            rows.append((found[1] == "▸", found[2], found[3]))
    return rows


def changed(rows: list[tuple[bool, str, str]], screen: str) -> bool:
    """Whether ``screen``'s agent rows differ from ``rows``."""
    return agent_rows(screen) != rows


def select_agent(tmux: Tmux, name: str, deadline_s: float) -> str:
    """Move the agents pane's cursor to ``name`` (the pane focused), a key at a time
    towards it, each key seen to move the cursor before the next (the rows may reorder
    meanwhile: waiting and failing agents sort to the top)."""
    deadline = time.monotonic() + deadline_s
    while True:
        screen = tmux.screen()
        rows = agent_rows(screen)
        names = [row[1] for row in rows]
        chosen = next((row[1] for row in rows if row[0]), None)
        if chosen == name and f"inbox of {name} " in screen:
            return screen
        if time.monotonic() > deadline:
            pytest.fail(f"{name} was never selected within {deadline_s:g}s; the screen "
                        f"shows:\n{screen}")
        if name in names and chosen in names and chosen != name:
            tmux.keys("Down" if names.index(name) > names.index(chosen) else "Up")
            tmux.wait_for(partial(changed, rows), "the agents' cursor moving",
                          STEP_DEADLINE_S)
        else:
            time.sleep(POLL_S)  # the inbox's title follows the cursor a frame later


def test_demo_in_tmux_wipe_resume_and_quit(demo: Tmux, tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    demo.wait_for(lambda s: "phase: execute" in s, "phase: execute", START_DEADLINE_S)

    # Focus moves after the key is handled: arrows typed before it would scroll the
    # stream. The footer shows the focus: its "Payload" key belongs to the stream.
    demo.wait_for(lambda s: "Payload" in footer(s), "the stream pane focused", STEP_DEADLINE_S)
    demo.keys("1")
    demo.wait_for(lambda s: "Payload" not in footer(s), "the agents pane focused",
                  STEP_DEADLINE_S)
    select_agent(demo, "executor", STEP_DEADLINE_S)
    seen_from = len(demo.screens) - 1

    # Asked first; the notification gives the request's offset in the log.
    demo.keys("w")
    demo.wait_for(lambda s: "Wipe executor's context?" in s, "the wipe's question",
                  STEP_DEADLINE_S)
    demo.keys("y")
    screen = demo.wait_for(lambda s: "wipe of executor requested (offset " in s,
                           "the wipe's notification", STEP_DEADLINE_S)
    requested = re.search(r"wipe of executor requested \(offset (\d+)\)", screen)
    assert requested is not None, screen

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
                and shown(after, rf"\b{wiped[0]} \d\d:\d\d:\d\d swarm +executor: "
                                 r"context wiped\b")
                # (The row is cut at the pane's width: the detail has the rest.)
                and shown(after, rf"\b{resumed[0]} \d\d:\d\d:\d\d executor +"
                                 r"resumed from\b")):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"wipe/resume not seen: CONTEXT_WIPED at {wiped}, RESUMED at "
                        f"{resumed} in the log; the screen shows:\n{demo.screens[-1]}")
        time.sleep(POLL_S)
    assert len(wiped) == 1 and len(resumed) == 1
    assert int(requested[1]) < wiped[0] < resumed[0]
    # The offset said is the request's own event.
    assert request_at(db, int(requested[1])) == ("wipe", "executor")

    demo.wait_for(lambda s: "phase: done" in s, "phase: done", RUN_DEADLINE_S)
    demo.wait_for(lambda s: "steps 4/4" in s, "steps 4/4", STEP_DEADLINE_S)
    # The agents are stopped after the last phase is written (AGENT_STOPPED, at the
    # swarm's shutdown), so their row may be drawn a tick after "steps 4/4".
    demo.wait_for(lambda s: (True, "executor", "done") in agent_rows(s)
                  or (False, "executor", "done") in agent_rows(s), "the executor done",
                  STEP_DEADLINE_S)

    demo.keys("q")
    demo.wait_for(lambda s: re.search(r"^EXIT=\d+", s, re.MULTILINE) is not None,
                  "the app's exit", STEP_DEADLINE_S)
    assert re.search(r"^EXIT=0$", demo.screens[-1], re.MULTILINE), demo.screens[-1]

    ledger = (tmp_path / "ws" / "SISYPHUS_LEDGER.md").read_text(encoding="utf-8")
    assert "**Phase:** done" in ledger


def hues_in(styled: str) -> set[str]:
    """The chromatic colours set by the SGR sequences of a capture: basic colours other
    than black, white and grey; 256-colour cube entries whose red, green and blue differ;
    true colours whose channels differ. (Under NO_COLOR, Textual draws in greys: contrast
    stays, hue goes.)"""
    found: set[str] = set()
    for params in re.findall(r"\x1b\[([0-9;]*)m", styled):
        values = [int(p) for p in params.split(";") if p]
        i = 0
        while i < len(values):
            value = values[i]
            if value in (38, 48) and i + 1 < len(values):
                if values[i + 1] == 5 and i + 2 < len(values):
                    n = values[i + 2]
                    cube = n - 16
                    if 16 <= n <= 231 and not (cube // 36 == cube // 6 % 6 == cube % 6):
                        found.add(f"{value};5;{n}")
                    elif 1 <= n <= 6 or 9 <= n <= 14:
                        found.add(f"{value};5;{n}")
                    i += 3
                    continue
                if values[i + 1] == 2 and i + 4 < len(values):
                    r, g, b = values[i + 2 : i + 5]
                    if not r == g == b:
                        found.add(f"{value};2;{r};{g};{b}")
                    i += 5
                    continue
            if value in {*range(31, 37), *range(41, 47), *range(91, 97), *range(101, 107)}:
                found.add(str(value))
            i += 1
    return found


def test_two_tuis_on_one_swarm_either_steers_and_quitting_one_leaves_it(
        tmp_path: Path) -> None:
    """The demo's TUI runs the swarm; a second TUI attached to its database (as over SSH:
    TERM=xterm-256color, NO_COLOR, no mouse) shows the same run, pauses and resumes it
    for both, and quitting it leaves the swarm running to the end."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    db = tmp_path / "swarm.db"
    runner = Tmux(in_pane(demo_argv(tmp_path, "0.6")), tmp_path / "a")
    attached: Tmux | None = None
    try:
        runner.wait_for(lambda s: "phase: execute" in s, "phase: execute", START_DEADLINE_S)
        attached = Tmux(in_pane([sys.executable, "-m", "sisyphus_tui", "tui", "--db", str(db),
                                 "--no-mouse"], env="NO_COLOR=1 "), tmp_path / "b")
        attached.wait_for(lambda s: "phase: execute" in s and "Payload" in footer(s),
                          "the attached TUI showing the run", START_DEADLINE_S)
        # The header names the database; a long path loses its start, not its name.
        assert re.search(r" …\S*_eit0/swarm\.db$|" + re.escape(str(db)),
                         attached.screen().splitlines()[0].rstrip())

        # Colours for one, greys only for the other: NO_COLOR is honoured, and the check
        # sees colours where there are some.
        assert hues_in(runner.styled_screen())
        assert not hues_in(attached.styled_screen())

        # Steered from the attached TUI, seen by both.
        attached.keys("p")
        for tui in (attached, runner):
            tui.wait_for(lambda s: "PAUSED" in s.splitlines()[0], "PAUSED", STEP_DEADLINE_S)
        attached.keys("p")
        for tui in (attached, runner):
            tui.wait_for(lambda s: "PAUSED" not in s.splitlines()[0], "the pause lifted",
                         STEP_DEADLINE_S)

        # Quitting the attached TUI ends only that process.
        attached.keys("q")
        attached.wait_for(lambda s: re.search(r"^EXIT=\d+", s, re.MULTILINE) is not None,
                          "the attached TUI's exit", STEP_DEADLINE_S)
        assert re.search(r"^EXIT=0$", attached.screens[-1], re.MULTILINE)
        runner.wait_for(lambda s: "phase: done" in s and "steps 4/4" in s, "phase: done",
                        RUN_DEADLINE_S)
        assert not re.search(r"^EXIT=", runner.screen(), re.MULTILINE)
        pauses = [p for p in control_actions(db) if p in ("pause", "unpause")]
        assert pauses == ["pause", "unpause"]
    finally:
        runner.kill()
        if attached is not None:
            attached.kill()


def request_at(db: Path, offset: int) -> tuple[str, str] | None:
    """The (action, agent) of the CONTROL event at ``offset``; None if it is not one."""
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute("SELECT json_extract(payload, '$.action'), "
                           "json_extract(payload, '$.agent') FROM events "
                           "WHERE \"offset\" = ? AND type = 'CONTROL'", (offset,)).fetchone()
    conn.close()
    return None if row is None else (str(row[0]), str(row[1]))


def control_actions(db: Path) -> list[str]:
    """The actions of the CONTROL events in the log, in order."""
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute("SELECT json_extract(payload, '$.action') FROM events "
                            "WHERE type = 'CONTROL' ORDER BY \"offset\"").fetchall()
    conn.close()
    return [str(action) for (action,) in rows]


@pytest.mark.parametrize("how", ["q", "SIGTERM", "SIGHUP"])
def test_a_demo_left_before_its_end_says_so_in_its_exit_code(tmp_path: Path, how: str) -> None:
    """`q`, SIGTERM or SIGHUP mid-run: the app closes cleanly, says where the run stopped
    and exits 130 / 143 / 129 (0 means done, every gate passed); the same command then
    resumes the run to its end."""
    from sisyphus_tui.stream.lease import current_host

    db = tmp_path / "swarm.db"
    tmux = Tmux(in_pane(demo_argv(tmp_path, "0.3")), tmp_path)
    try:
        tmux.wait_for(lambda s: "phase: execute" in s, "the run in execute", RUN_DEADLINE_S)
        if how == "q":
            tmux.keys("q")
        else:
            host = current_host(db)
            assert host is not None and host.pid is not None
            os.kill(host.pid, getattr(signal, how))
        screen = tmux.wait_for(lambda s: re.search(r"^EXIT=\d+", s, re.MULTILINE) is not None,
                               "the app to exit", STEP_DEADLINE_S)
        code = {"q": 130, "SIGTERM": 143, "SIGHUP": 129}[how]
        assert re.search(rf"^EXIT={code}$", screen, re.MULTILINE), screen
        assert "interrupted; the run stopped at offset" in screen, screen
        assert "run the same command to resume" in " ".join(screen.split())
        assert "Traceback" not in screen
    finally:
        tmux.kill()
    assert current_host(db) is None
    again = subprocess.run([*demo_argv(tmp_path, "0"), "--headless"], capture_output=True,
                           text=True, timeout=RUN_DEADLINE_S)
    assert again.returncode == 0, again.stderr


CRASHING = """
import sys
from sisyphus_tui.cli import main
from sisyphus_tui.tui.app import SisyphusApp

def crash(self):  # a bug planted in the app: its first refresh raises
    raise RuntimeError("planted bug")

SisyphusApp._refresh_panes = crash
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["demo", "tui"])
def test_a_tui_that_crashed_does_not_exit_0(tmp_path: Path, command: str) -> None:
    db = tmp_path / "swarm.db"
    if command == "tui":
        assert subprocess.run([*demo_argv(tmp_path, "0"), "--headless"],
                              capture_output=True, timeout=RUN_DEADLINE_S).returncode == 0
        args = ["tui", "--db", str(db)]
    else:
        args = demo_argv(tmp_path, "0.3")[3:]
    tmux = Tmux(in_pane([sys.executable, "-c", CRASHING, *args]), tmp_path)
    try:
        screen = tmux.wait_for(lambda s: re.search(r"^EXIT=\d+", s, re.MULTILINE) is not None,
                               "the app to exit", START_DEADLINE_S)
        code = int(re.search(r"^EXIT=(\d+)", screen, re.MULTILINE).group(1))  # type: ignore[union-attr]
        assert code != 0, screen
        assert "the TUI stopped on an error" in screen, screen
    finally:
        tmux.kill()
