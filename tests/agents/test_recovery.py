"""Recovery with real agents: ``sisyphus run`` on the real ``claude`` CLI against the fake
Anthropic server, its host killed (SIGKILL of its process group) at several points of
the agents' turns, one after another (the planner's, which only reads, right after its
TURN_STARTED; the executor's right after its first session event, right after a
TURN_STARTED, once its first edit is on disk and right after a resumed session's
event), then a host that completes the run. Each kill
point is waited for in the log or on disk (the fake model holds the agent there until
the host is dead). The turn in doubt is rolled back to the shadow commit it started
from (the junk file an interrupted attempt wrote never reaches the final tree), done
again in the session the log recorded with a note that it was interrupted (or in a
fresh, primed one, by the role's ``on_interrupt``); each step's effects are in the log
once and the gates pass. A wipe in the middle of the turn: the re-primed new session
finishes the step. The executor on codex, killed mid-edit: resumed in its thread."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.cli import _ledger_from_log
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream import open_store
from tests.agents import test_swarm_on_agents as swarm
from tests.agents.fakemodel import DONE, FakeModel, Step
from tests.agents.fakemodel.anthropic import Anthropic
from tests.agents.fakemodel.openai_responses import OpenAIResponses
from tests.agents.test_codex import MODEL as CODEX_MODEL
from tests.agents.test_codex import configure as codex_configure

repo = swarm.repo  # (the fixture: a small repository whose one test fails)
FIXED = "def add(a, b):\n    return a + b\n"
JUNK = "junk.txt"
# What every prompt sisyphus writes for a role says; the interruption note and the
# primer of a new session, as the brain words them.
PROMPT_MARK = "of a supervised swarm of coding agents"
NOTE_MARK = "this turn was interrupted"
ROLLED_MARK = "The workspace was rolled back to where that attempt started"
PRIMER_MARK = "your context was reset: this is what the log remembers"

Events = list[tuple[int, str, str | None, dict[str, Any]]]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(b.get("text", "")) for b in content or []
                     if isinstance(b, dict) and b.get("type") in ("text", "input_text"))


def conversation(body: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """A request's history as (role, text, tools called): the Anthropic API's
    ``messages`` (claude) or the Responses API's ``input`` items (codex)."""
    found: list[tuple[str, str, list[str]]] = []
    for item in body.get("messages") or body.get("input") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") in ("function_call", "custom_tool_call", "local_shell_call"):
            found.append(("assistant", "", [str(item.get("name"))]))
            continue
        blocks = item.get("content") if isinstance(item.get("content"), list) else []
        tools = [str(b.get("name")) for b in blocks
                 if isinstance(b, dict) and b.get("type") == "tool_use"]
        found.append((str(item.get("role")), _text(item), tools))
    return found


def since_prompt(body: dict[str, Any]) -> tuple[str, list[str]]:
    """The last prompt sisyphus gave the agent in this conversation, and the tools the
    model called after it."""
    history = conversation(body)
    for index in range(len(history) - 1, -1, -1):
        role, text, _ = history[index]
        if role == "user" and PROMPT_MARK in text:
            return text, [tool for _, _, tools in history[index + 1:] for tool in tools]
    return "", []


class Executor:
    """The fake model, with the executor's green turn under the test's control: read
    calc.py, write the junk file (when ``junk``), fix calc.add, done. ``hold`` names
    the point where the model stops answering (``first``: its first call of an
    attempt; ``junk``: the call after the junk file is written) until ``release``."""

    def __init__(self) -> None:
        self.junk = False
        self.hold: str | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self.firsts: list[dict[str, Any]] = []  # each green attempt's first call
        self.reds: list[dict[str, Any]] = []  # each call of the red half
        self.plans: list[dict[str, Any]] = []  # each call of the planner

    def __call__(self, index: int, body: dict[str, Any]) -> Step:
        prompt, tools = since_prompt(body)
        if "write the plan" in prompt:
            self.plans.append(body)
            if self.hold == "plan":
                return self._held()
        if "TEST half" in prompt:
            self.reds.append(body)
            if self.hold == "red":
                return self._held()
        if "Now make" not in prompt:
            return swarm.model_of_the_swarm(index, body)
        steps = [Step(tool="read", args={"path": "calc.py"})]
        if self.junk:
            steps.append(Step(tool="write", args={"path": JUNK, "content": "half an attempt\n"}))
        # (Whole lines: what Codex's apply_patch replaces.)
        steps.append(Step(tool="edit", args={"path": "calc.py", "old": "    return a - b",
                                             "new": "    return a + b"}))
        done = len(tools)  # (the tool calls of this attempt so far)
        if not done:
            self.firsts.append(body)
        point = "first" if not done else "junk" if self.junk and done == 2 else "later"
        return self._held() if self.hold == point else (
            steps[done] if done < len(steps) else DONE)

    def _held(self) -> Step:
        """Hold the call until the host is killed; then what is left of its agent (its
        CLI gets a few seconds to save its session) is told the turn is over, so it
        edits nothing more."""
        self.held.set()
        self.release.wait(60)
        return DONE


def events_of(db: Path) -> Events:
    """The log as it is now (read only: never makes the file)."""
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute("SELECT offset, type, actor, payload FROM events "
                                "ORDER BY offset").fetchall()
        except sqlite3.OperationalError:
            return []  # (the schema not made yet)
    return [(o, t, a, json.loads(p)) for o, t, a, p in rows]


def until(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll ``condition`` until it holds (the log and the disk have no event to wait
    on from another process); its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def message_of(events: Events, kind: str) -> int | None:
    """The offset of the executor's message of ``kind`` (``execute_step``: the red half
    of step 1, ``green``: its green half)."""
    return next((o for o, t, _, p in events if t == "MESSAGE" and p.get("kind") == kind),
                None)


def green_message(events: Events) -> int | None:
    """The offset of the executor's green half of step 1."""
    return message_of(events, "green")


def session_after(events: Events, message: int, offset: int) -> str | None:
    """The session the executor's agent said for ``message`` after ``offset``."""
    return next((p["data"]["session_id"] for o, t, _, p in events
                 if o > offset and t == "AGENT_OUTPUT" and p["agent"] == "executor"
                 and p["message"] == message and p["kind"] == "session"), None)


def turns(events: Events, message: int | None = None,
          agent: str = "executor") -> list[tuple[int, dict[str, Any]]]:
    """The TURN_STARTED records of ``agent`` (for ``message``, if given): (offset,
    payload)."""
    return [(o, p) for o, t, _, p in events if t == "TURN_STARTED" and p["agent"] == agent
            and message in (None, p["message"])]


async def ledger_of(db: Path) -> Ledger:
    """The log folded, as the CLI folds it."""
    async with await open_store(db) as store:
        ledger: Ledger = await _ledger_from_log(store)
        return ledger


def run_args(tmp_path: Path, repo: Path, db: Path, *, brain: bool = True) -> list[str]:
    """The first host's arguments: the goal, with the suite as its gate, every role on
    claude (unless ``brain`` is False: then as the workspace's config says)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"gates": [{"name": "tests", "argv": [
        "{python}", "-m", "pytest", "-q", "-p", "no:cacheprovider"]}]}))
    return ["--db", str(db), "--workspace", str(repo), "--goal", swarm.GOAL, "--spec",
            str(spec), *(["--brain", "claude"] if brain else [])]


class Host:
    """``sisyphus run`` as a subprocess in its own process group."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, n: int) -> None:
        self.err = cwd / f"host-{n}.err"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "sisyphus_tui", "run",
                                          "--headless", *args], cwd=cwd, env=env,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)

    def kill(self) -> None:
        """SIGKILL of its whole process group."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def finish(self, timeout: float = 240) -> str:
        """Wait for it to end on its own; its stderr (it must have exited 0)."""
        code = self.proc.wait(timeout)
        text = self.err.read_text()
        assert code == 0, text
        return text


def assert_effects_once(repo: Path, db: Path) -> Events:
    """The workspace is the clean run's and passes the gates; every effect of the step
    is in the log once."""
    assert (repo / "calc.py").read_text() == FIXED
    assert not (repo / JUNK).exists()  # half an attempt never survives
    green = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=repo, capture_output=True, text=True)
    assert green.returncode == 0, green.stdout
    events = events_of(db)
    edits = [(p["path"], p.get("how"), p["step"]) for _, t, _, p in events if t == "FILE_EDIT"]
    assert edits == [("calc.py", "observed", 1)]
    runs = [(t, p["step"]) for _, t, _, p in events if t in ("TEST_PASS", "TEST_FAIL")]
    assert runs == [("TEST_FAIL", 1), ("TEST_PASS", 1)]  # red, then green: once each
    assert [p["passed"] for _, t, _, p in events if t == "GATE_RESULT"] == [True]
    types = [t for _, t, _, _ in events]
    assert types.count("PLAN_INIT") == 1 and types.count("REVIEW") == 1
    steps_done = [p for _, t, a, p in events if t == "MESSAGE" and p.get("kind") == "step_done"]
    assert len(steps_done) == 1
    return events


def test_a_turn_killed_again_and_again_is_rolled_back_and_resumed_with_a_note(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    db = tmp_path / "swarm.db"
    script = Executor()
    first = run_args(tmp_path, repo, db)
    again = ["--db", str(db), "--workspace", str(repo)]
    with FakeModel(Anthropic(), script) as model:
        env = swarm.claude_env(agent_env, model)

        def killed(host: Host, condition: Callable[[], Any], what: str) -> Any:
            try:
                found = until(condition, what)
                host.kill()
            finally:
                if host.proc.poll() is None:
                    host.kill()
                script.release.set()
            # The next host's model is set before it starts.
            script.held.clear()
            script.release = threading.Event()
            return found

        # -1. The planner (it reads, never edits): killed right after its TURN_STARTED.
        script.hold = "plan"
        killed(Host(first, env, tmp_path, -1), lambda: turns(events_of(db), agent="planner"),
               "the planner's TURN_STARTED")

        # 0. The executor's first turn (its red half, a new session): killed right
        # after its session event, the session is resumed by the next attempt.
        script.hold = "red"

        def red_session() -> Any:
            events = events_of(db)
            red = message_of(events, "execute_step")
            return red is not None and session_after(events, red, 0)

        new_session = killed(Host(again, env, tmp_path, 0), red_session,
                             "the red half's session")
        # The plan was asked again, told so; nothing to roll back for a turn that reads.
        planned = [p for _, p in turns(events_of(db), agent="planner")]
        assert [(p["attempt"], p["recovering"], p["workspace"]) for p in planned] == [
            (1, False, None), (2, True, None)]
        replan = since_prompt(script.plans[-1])[0]
        assert NOTE_MARK in replan and "Answer again, from the start." in replan
        assert ROLLED_MARK not in replan
        red = message_of(events_of(db), "execute_step")
        assert red is not None
        # The log's fold has the session the moment it was said (the turn unfinished).
        view = asyncio.run(ledger_of(db)).agents["executor"]
        assert (view.session, view.turn_message, view.turn_attempt) == (new_session, red, 1)

        # 1. Killed right after the green turn's TURN_STARTED is on the record.
        script.junk, script.hold = True, "first"

        def started(attempt: int) -> Callable[[], Any]:
            def seen() -> Any:
                events = events_of(db)
                message = green_message(events)
                return message is not None and any(
                    p["attempt"] == attempt for _, p in turns(events, message))
            return seen

        killed(Host(again, env, tmp_path, 1), started(1), "the first TURN_STARTED")
        events = events_of(db)
        # The red half redone in the session its first attempt had started.
        assert [(p["attempt"], p["session"], p["recovering"]) for _, p in turns(events, red)
                ] == [(1, None, False), (2, new_session, True)]
        assert "TEST half" in json.dumps(script.reds[-1]["messages"][:-1])  # (its history)
        assert NOTE_MARK in since_prompt(script.reds[-1])[0]
        message = green_message(events)
        assert message is not None
        [(_, one)] = turns(events, message)
        assert one["recovering"] is False and one["backend"] == "claude"
        assert len(one["workspace"]) >= 40  # the shadow commit it starts from
        session = one["session"]  # the executor's session, from its red half
        assert session == new_session
        assert (repo / "calc.py").read_text() != FIXED

        # 2. Killed once the agent's first edit (the junk file) is on disk.
        script.hold = "junk"
        killed(Host(again, env, tmp_path, 2),
               lambda: (repo / JUNK).exists() and script.held.is_set(), "the junk file")
        assert (repo / JUNK).read_text() == "half an attempt\n"
        # The redone attempt was told so, in the session the log recorded.
        note = since_prompt(script.firsts[-1])[0]
        assert NOTE_MARK in note and ROLLED_MARK in note and "attempt 1" in note
        assert PRIMER_MARK not in note  # the same session: it remembers

        # 3. Killed right after the next attempt's session event.
        script.junk, script.hold = False, "first"

        def session_said() -> Any:
            events = events_of(db)
            third = [o for o, p in turns(events, message) if p["attempt"] == 3]
            return third and any(
                o > third[0] and t == "AGENT_OUTPUT" and p["message"] == message
                and p["kind"] == "session" for o, t, _, p in events)

        killed(Host(again, env, tmp_path, 3), session_said, "the third attempt's session")
        # Rolled back before the agent ran: the junk is gone already.
        assert not (repo / JUNK).exists()

        # 4. A host that completes the run.
        script.hold = None
        done = Host(again, env, tmp_path, 4).finish()
        last = script.firsts[-1]
    assert "was in doubt" in done and "rolled back" in done
    events = assert_effects_once(repo, db)
    attempts = [p for _, p in turns(events, message)]
    assert [p["attempt"] for p in attempts] == [1, 2, 3, 4]
    assert [p["recovering"] for p in attempts] == [False, True, True, True]
    # Every attempt starts from the same tree (the one the first found) and resumes
    # the session the log recorded.
    assert {p["workspace"] for p in attempts} == {one["workspace"]}
    assert {p["session"] for p in attempts} == {session}
    outputs = [p for _, t, a, p in events if t == "AGENT_OUTPUT" and a == "executor"
               and p["message"] == message and p["kind"] == "session"]
    assert {p["data"]["session_id"] for p in outputs} == {session}
    # The last attempt's conversation holds the earlier ones (resumed, not new): the
    # junk file the second wrote is in its history, though not on disk.
    history = json.dumps(last["messages"])
    assert JUNK in history and "TEST half" in history
    assert NOTE_MARK in since_prompt(last)[0] and "attempt 3" in since_prompt(last)[0]
    # The record's hash is the prompt's the CLI was given.
    said = [str(b["text"]) for b in last["messages"][-1]["content"]
            if isinstance(b, dict) and PROMPT_MARK in str(b.get("text", ""))]
    assert [hashlib.sha256(t.encode()).hexdigest() for t in said] == [
        attempts[-1]["prompt_sha256"]]
    # The agent's live output of every attempt is kept, numbered on: no key twice.
    sequences = [p["sequence"] for _, t, a, p in events if t == "AGENT_OUTPUT"
                 and a == "executor" and p["message"] == message]
    assert sequences == list(range(len(sequences)))


@pytest.mark.parametrize("how", ["fresh", "wipe", "lost"])
def test_a_new_session_is_primed_from_the_log_and_finishes_the_step(
        how: str, repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    """``fresh``: the role's on_interrupt says a turn in doubt starts a new session
    (the host killed after the junk edit); ``wipe``: the executor's context is wiped
    while its agent is in the middle of the turn (the same host carries on); ``lost``:
    the host killed after the junk edit and the CLI's own session store gone with it, so
    the resume the policy asks for cannot happen and the new session is primed."""
    db = tmp_path / "swarm.db"
    if how == "fresh":
        (repo / ".sisyphus").mkdir()
        (repo / ".sisyphus" / "config.toml").write_text(
            '[brain]\nbackend = "claude"\n\n[roles.executor]\non_interrupt = "fresh"\n')
    script = Executor()
    script.junk, script.hold = True, "junk"
    args = run_args(tmp_path, repo, db)
    with FakeModel(Anthropic(), script) as model:
        env = swarm.claude_env(agent_env, model)
        host = Host(args, env, tmp_path, 1)
        try:
            until(lambda: (repo / JUNK).exists() and script.held.is_set(), "the junk file")
            if how in ("fresh", "lost"):
                host.kill()
                script.junk, script.hold = False, None
                script.release.set()
                if how == "lost":
                    sessions_store = Path(agent_env["HOME"]) / ".claude" / "projects"
                    # (once the killed host's CLI is gone: it may save on its way out)
                    until(lambda: not swarm.processes_in(repo.resolve()), "the CLI's end")
                    assert sessions_store.is_dir()
                    shutil.rmtree(sessions_store)
                host = Host(["--db", str(db), "--workspace", str(repo)], env, tmp_path, 2)
            else:
                script.junk, script.hold = False, None
                wiped = subprocess.run([sys.executable, "-m", "sisyphus_tui", "wipe",
                                        "executor", "--db", str(db)], cwd=tmp_path, env=env,
                                       capture_output=True, text=True, timeout=60)
                assert wiped.returncode == 0, wiped.stderr
                until(lambda: any(t == "CONTEXT_WIPED" for _, t, _, _ in events_of(db)),
                      "the wipe")
                script.release.set()
            out = host.finish()
        finally:
            if host.proc.poll() is None:
                host.kill()
            script.release.set()
        first, last = script.firsts[0], script.firsts[-1]
        reds = len(script.reds)
    events = assert_effects_once(repo, db)
    message = green_message(events)
    assert message is not None
    one, two = [p for _, p in turns(events, message)]
    # (lost: the resume was tried, as the policy says, and could not happen)
    tried = one["session"] if how == "lost" else None
    assert (two["attempt"], two["recovering"], two["session"]) == (2, True, tried)
    assert one["session"] is not None and two["workspace"] == one["workspace"]
    sessions = [p["data"]["session_id"] for _, t, a, p in events if t == "AGENT_OUTPUT"
                and a == "executor" and p["message"] == message and p["kind"] == "session"]
    assert sessions[0] == one["session"] and sessions[-1] != one["session"]
    # The new session's first prompt is primed from the log: where the run is, the
    # executor's checkpoint (its red half handled), the green message it handles now.
    primed = since_prompt(last)[0]
    assert PRIMER_MARK in primed and NOTE_MARK in primed and ROLLED_MARK in primed
    assert f"#{message} from executor, green (the one you are handling now)" in primed
    assert "Your last checkpoint" in primed and "Make calc.add return the sum" in primed
    assert primed.index(PRIMER_MARK) < primed.index("## Your task now") < primed.index(
        "Now make")
    assert primed.count("## Your task now") == 1
    # It carries on from the checkpoint: the red half, committed, is not done again.
    assert reds == 1
    # ... in a new conversation: nothing of the old session's (its red half, its junk).
    history = json.dumps(last["messages"])
    assert "TEST half" not in history and JUNK not in history
    assert "TEST half" in json.dumps(first["messages"])
    if how in ("fresh", "lost"):
        assert "was in doubt" in out


def test_a_codex_turn_killed_mid_edit_is_rolled_back_and_resumed_in_its_thread(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    """The executor on codex (``exec resume`` of its thread), the other roles on
    claude: the host killed once the junk file is on disk, then a host that completes."""
    db = tmp_path / "swarm.db"
    (repo / ".sisyphus").mkdir()
    (repo / ".sisyphus" / "config.toml").write_text(
        f'[brain]\nbackend = "claude"\n\n[roles.executor]\nbackend = "codex"\n'
        f'model = "{CODEX_MODEL}"\n')
    script = Executor()
    script.junk, script.hold = True, "junk"
    with FakeModel(Anthropic(), script) as claude_model, \
            FakeModel(OpenAIResponses(), script) as codex_model:
        env = codex_configure(swarm.claude_env(agent_env, claude_model), codex_model.url)
        host = Host(run_args(tmp_path, repo, db, brain=False), env, tmp_path, 1)
        try:
            until(lambda: (repo / JUNK).exists() and script.held.is_set(), "the junk file")
            host.kill()
        finally:
            if host.proc.poll() is None:
                host.kill()
            script.junk, script.hold = False, None
            script.release.set()
        out = Host(["--db", str(db), "--workspace", str(repo)], env, tmp_path, 2).finish()
        last = script.firsts[-1]
    assert "was in doubt" in out
    events = assert_effects_once(repo, db)
    assert {p["brain"] for _, t, _, p in events if t == "AGENT_SPAWNED"
            and p["agent"] == "executor"} == {"codex"}
    message = green_message(events)
    assert message is not None
    one, two = [p for _, p in turns(events, message)]
    assert (one["backend"], one["model"]) == ("codex", CODEX_MODEL)
    assert (two["attempt"], two["recovering"], two["workspace"]) == (2, True, one["workspace"])
    # Resumed in the thread the log recorded: the redo's history holds the first
    # attempt's junk, and its prompt the note.
    threads = {p["data"]["session_id"] for _, t, a, p in events if t == "AGENT_OUTPUT"
               and a == "executor" and p["kind"] == "session"}
    assert len(threads) == 1 and two["session"] in threads
    assert JUNK in json.dumps(last["input"])
    assert NOTE_MARK in since_prompt(last)[0] and ROLLED_MARK in since_prompt(last)[0]


def test_the_host_killed_at_random_points_of_the_turn_repeatedly(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    """The executor's green turn on the real claude with the host SIGKILLed at a random
    instant of it, three times (the seed is said when it fails), then a host that
    finishes: the gates pass, every effect of the step is in the log once, each attempt
    started from the same workspace. (The junk file a killed attempt leaves, rolled
    back, is proven at chosen points by the test above: a random kill may come after
    the turn committed, when what it wrote is the step's own effect.)"""
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    db = tmp_path / "swarm.db"
    script = Executor()
    args = run_args(tmp_path, repo, db)
    kills: list[float] = []
    with FakeModel(Anthropic(), script) as model:
        env = swarm.claude_env(agent_env, model)
        for n in range(3):
            host = Host(args if n == 0 else ["--db", str(db), "--workspace", str(repo)],
                        env, tmp_path, n)
            try:
                def started(n: int = n, host: Host = host) -> bool:
                    events = events_of(db)
                    message = green_message(events)
                    # (or the host ended: the turn had committed before the last kill)
                    return host.proc.poll() is not None or (
                        message is not None and len(turns(events, message)) > n)

                until(started, f"attempt {n + 1} of the green turn (seed {seed})")
                if host.proc.poll() is not None:
                    break
                # A random instant of the turn: the CLI starting, reading, the junk
                # written or not yet, the fix half made (the whole turn takes ~2-4 s).
                delay = chance.uniform(0.0, 3.0)
                kills.append(round(delay, 2))
                time.sleep(delay)  # (the point of the kill, chosen at random)
            finally:
                if host.proc.poll() is None:
                    host.kill()
        last = Host(["--db", str(db), "--workspace", str(repo)], env, tmp_path, 9)
        try:
            last.finish()
        finally:
            if last.proc.poll() is None:
                last.kill()
    events = assert_effects_once(repo, db)
    message = green_message(events)
    attempts = [p["attempt"] for _, p in turns(events, message)]
    assert attempts == list(range(1, len(attempts) + 1)), (seed, kills)
    # Every attempt of the turn started from the same workspace: the one before it.
    assert len({p["workspace"] for _, p in turns(events, message)}) == 1, (seed, kills)
