"""The swarm on real coding agents: ``sisyphus run`` on a small repository with a failing
test, every role on the real ``claude`` CLI (pinned) against a fake Anthropic API that
plans, reviews and edits as a model would, ends with the tests green; ``sisyphus agent``
runs one prompt into the log and, killed mid-turn, resumes its session; the scripted
brain is refused on a goal that is not the demo's, before a file is touched."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agents.fakemodel import DONE, FakeModel, Step
from tests.agents.fakemodel.anthropic import Anthropic
from tests.agents.fakemodel.openai_chat import OpenAIChat

GOAL = "fix the failing test of calc.add"
PLAN = {"approach": "correct the operator in calc.add", "summary": "add adds",
        "tags": ["bugfix"],
        "steps": [{"title": "Make calc.add return the sum",
                   "test": "tests/test_calc.py::test_add", "files": ["calc.py"]}]}
APPROVE = {"verdict": "approve", "reasons": ["one small step, with its test"],
           "precedents": []}


def last_user_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks of the request's last user message."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return [{"type": "text", "text": content}]
            return [b for b in content or [] if isinstance(b, dict)]
    return []


def last_tool(body: dict[str, Any]) -> str | None:
    """The tool the model called last in this conversation."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "assistant" and isinstance(message.get("content"), list):
            for block in reversed(message["content"]):
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    return str(block.get("name"))
    return None


def model_of_the_swarm(index: int, body: dict[str, Any]) -> Step:
    """What a model would answer each role's prompt with (the prompt says which)."""
    blocks = last_user_blocks(body)
    if any(b.get("type") == "tool_result" for b in blocks):
        if last_tool(body) == "Read":  # (Claude Code edits only a file it has read)
            return Step(tool="edit", args={"path": "calc.py", "old": "a - b",
                                           "new": "a + b"})
        return DONE  # the tool ran: the turn is over
    prompt = "\n".join(str(b.get("text", "")) for b in blocks)
    if "write the plan" in prompt:
        return Step(tool="StructuredOutput", args=PLAN)
    if "Review this plan" in prompt:
        return Step(tool="StructuredOutput", args=APPROVE)
    if "TEST half" in prompt:
        return Step(text="tests/test_calc.py::test_add already proves it, and fails now.")
    if "Now make" in prompt:
        return Step(tool="read", args={"path": "calc.py"})
    if "Your task" in prompt:  # the researcher
        return Step(tool="StructuredOutput", args={"text": "calc.add subtracts",
                                                   "data": {}})
    return DONE


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small repository whose one test fails."""
    return calc_repo(tmp_path / "repo")


def calc_repo(root: Path) -> Path:
    """``root`` made a small repository whose one test fails (calc.add subtracts)."""
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    return root


def sisyphus(*args: str, env: dict[str, str], cwd: Path,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "sisyphus_tui", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def claude_env(agent_env: dict[str, str], model: FakeModel) -> dict[str, str]:
    return {**os.environ, **agent_env, "ANTHROPIC_BASE_URL": model.url,
            "ANTHROPIC_API_KEY": "sk-fake", "PYTHONDONTWRITEBYTECODE": "1"}


def events_of(db: Path) -> list[tuple[int, str, str | None, dict[str, Any]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT offset, type, actor, payload FROM events "
                            "ORDER BY offset").fetchall()
    return [(o, t, a, json.loads(p)) for o, t, a, p in rows]


def test_a_run_on_claude_ends_with_the_tests_green(repo: Path, tmp_path: Path,
                                                    agent_env: dict[str, str]) -> None:
    # The project's own test command (here a wrapper that says it ran, then pytest).
    runner = tmp_path / "project-tests"
    runner.write_text(f"#!/bin/sh\necho ran >> {tmp_path / 'ran'}\n"
                      f"exec {sys.executable} -m pytest -q -p no:cacheprovider \"$@\"\n")
    runner.chmod(0o755)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"tests": [str(runner)], "gates": [
        {"name": "tests", "argv": ["{python}", "-m", "pytest", "-q", "-p",
                                   "no:cacheprovider"]}]}))
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), model_of_the_swarm) as model:
        done = sisyphus("run", "--headless", "--db", str(db), "--workspace", str(repo),
                        "--goal", GOAL, "--spec", str(spec), "--brain", "claude",
                        env=claude_env(agent_env, model), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    green = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=repo, capture_output=True, text=True)
    assert green.returncode == 0, green.stdout
    events = events_of(db)
    types = [t for _, t, _, _ in events]
    # Red before green, both run by the swarm, with the project's own test command;
    # the gate passed.
    assert types.index("TEST_FAIL") < types.index("TEST_PASS")
    runs = [p for _, t, _, p in events if t in ("TEST_FAIL", "TEST_PASS")]
    assert {r["command"][0] for r in runs} == {str(runner)}
    assert (tmp_path / "ran").read_text().count("ran") == len(runs)
    gates = [p for _, t, _, p in events if t == "GATE_RESULT"]
    assert [g["passed"] for g in gates] == [True]
    # The edit as the files show it, not as the agent told it.
    edits = [p for _, t, _, p in events if t == "FILE_EDIT"]
    assert [(e["path"], e["how"], e["step"]) for e in edits] == [("calc.py", "observed", 1)]
    assert edits[0]["before_sha256"] != edits[0]["after_sha256"]
    # Every role thought with claude, in a session of its own, streamed into the log.
    spawned = {p["agent"]: p["brain"] for _, t, _, p in events if t == "AGENT_SPAWNED"}
    assert {spawned[r] for r in ("planner", "validator", "executor")} == {"claude"}
    outputs = [(a, p) for _, t, a, p in events if t == "AGENT_OUTPUT"]
    sessions = {a: p["data"]["session_id"] for a, p in outputs if p["kind"] == "session"}
    assert {"planner", "validator", "executor"} <= sessions.keys()
    assert len(set(sessions.values())) == len(sessions)  # isolated contexts
    tool_calls = [p["data"]["name"] for a, p in outputs
                  if a == "executor" and p["kind"] == "tool_call"]
    assert "Edit" in tool_calls
    assert any(p["kind"] == "usage" and p["data"].get("input_tokens") for _, p in outputs)
    # The plan in the log is the one the planner's agent answered with.
    steps = [p["title"] for _, t, _, p in events if t == "PLAN_STEP"]
    assert steps == ["Make calc.add return the sum"]


def test_run_refuses_the_scripted_brain_on_a_users_goal(repo: Path, tmp_path: Path) -> None:
    before = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*"))
    db = tmp_path / "swarm.db"
    refused = sisyphus("run", "--headless", "--db", str(db), "--workspace", str(repo),
                       "--goal", GOAL, env=dict(os.environ), cwd=tmp_path)
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert "\n" not in line and "scripted brain only plays the demo" in line
    assert "--brain claude" in line and "config.toml" in line
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")) == before
    assert not db.exists()  # refused before the log is even made


def test_agent_prints_its_answer_and_logs_every_event(repo: Path, tmp_path: Path,
                                                      agent_env: dict[str, str]) -> None:
    steps = [Step(tool="read", args={"path": "calc.py"}),
             Step(text="calc.add subtracts: it returns a - b.")]
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), steps) as model:
        done = sisyphus("agent", "claude", "What does calc.add do?", "--workspace",
                        str(repo), "--db", str(db), "--name", "asker",
                        env=claude_env(agent_env, model), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "calc.add subtracts: it returns a - b.\n"
    events = events_of(db)
    kinds = [p["kind"] for _, t, _, p in events if t == "AGENT_OUTPUT"]
    assert kinds[0] == "session" and kinds[-1] == "finished"
    assert {"tool_call", "tool_result", "text", "usage"} <= set(kinds)
    spawned = [p for _, t, _, p in events if t == "AGENT_SPAWNED"]
    assert spawned[0]["agent"] == "asker" and spawned[0]["brain"] == "claude"
    with sqlite3.connect(db) as conn:
        cursor = conn.execute("SELECT position FROM cursors WHERE agent = 'asker'").fetchone()
    task = [o for o, t, _, p in events if t == "MESSAGE"][0]
    assert cursor == (task,)  # the prompt is handled: the cursor is past it


def processes_in(folder: Path) -> list[int]:
    """The pids of the processes whose working directory is ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_agent_killed_mid_turn_resumes_its_session(repo: Path, tmp_path: Path,
                                                    agent_env: dict[str, str]) -> None:
    asked = threading.Event()
    release = threading.Event()

    def script(index: int, body: dict[str, Any]) -> Step:
        if index == 0:
            return Step(tool="read", args={"path": "calc.py"})
        if "still there?" not in json.dumps(body["messages"][-1]):
            asked.set()
            release.wait(60)  # the turn is still thinking when the host is killed
        return Step(text="Yes: calc.add still subtracts.")

    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), script) as model:
        env = claude_env(agent_env, model)
        first = subprocess.Popen([sys.executable, "-m", "sisyphus_tui", "agent", "claude",
                                  "What does calc.add do?", "--workspace", str(repo),
                                  "--db", str(db), "--name", "asker"],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        try:
            assert asked.wait(120), "the agent never reached its second model call"
            assert processes_in(repo.resolve()), "the agent's CLI is not running"
            first.send_signal(signal.SIGKILL)
            first.wait(30)
            # The CLI dies with its host: nothing goes on editing the workspace.
            deadline = time.monotonic() + 30
            while processes_in(repo.resolve()) and time.monotonic() < deadline:
                time.sleep(0.05)  # (polling a condition: /proc has no event for it)
            assert processes_in(repo.resolve()) == []
        finally:
            for pid in processes_in(repo.resolve()):
                os.kill(pid, signal.SIGKILL)
            release.set()
        killed = events_of(db)
        sessions = [p["data"]["session_id"] for _, t, _, p in killed
                    if t == "AGENT_OUTPUT" and p["kind"] == "session"]
        assert len(sessions) == 1
        again = sisyphus("agent", "claude", "still there?", "--workspace", str(repo),
                         "--db", str(db), "--name", "asker", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout == "Yes: calc.add still subtracts.\n"
        resumed = model.posts()[-1]
    # The second run's model call holds the first conversation: its session resumed.
    history = json.dumps(resumed["messages"])
    assert "What does calc.add do?" in history and "still there?" in history
    after = events_of(db)
    later = [p["data"]["session_id"] for o, t, _, p in after
             if t == "AGENT_OUTPUT" and p["kind"] == "session" and o > killed[-1][0]]
    assert later == [sessions[0]]


def test_run_refuses_an_agent_that_is_not_installed(repo: Path, tmp_path: Path) -> None:
    before = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*"))
    db = tmp_path / "swarm.db"
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    refused = sisyphus("run", "--headless", "--db", str(db), "--workspace", str(repo),
                       "--goal", GOAL, "--brain", "codex", env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == ("sisyphus: error: codex: 'codex' is not installed or not on "
                              "PATH (install @openai/codex)\n")
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")) == before


def test_a_session_that_cannot_come_back_is_started_afresh(repo: Path, tmp_path: Path,
                                                          agent_env: dict[str, str]) -> None:
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), [Step(text="first answer")]) as model:
        env = claude_env(agent_env, model)
        first = sisyphus("agent", "claude", "the first prompt", "--workspace", str(repo),
                         "--db", str(db), env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        # The CLI's own session store is gone (another HOME, a cleanup).
        store = Path(agent_env["HOME"]) / ".claude" / "projects"
        assert store.is_dir()
        subprocess.run(["rm", "-rf", str(store)], check=True)
        again = sisyphus("agent", "claude", "the second prompt", "--workspace", str(repo),
                         "--db", str(db), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "first answer\n"  # a new conversation: the model's first step
    assert "the first prompt" not in json.dumps(model.posts()[-1]["messages"])
    outputs = [p for _, t, _, p in events_of(db) if t == "AGENT_OUTPUT"]
    sessions = [p["data"]["session_id"] for p in outputs if p["kind"] == "session"]
    assert len(sessions) == 2 and sessions[0] != sessions[1]
    said = [p["text"] for p in outputs if p["kind"] == "error"]
    assert any(f"could not resume session {sessions[0]}" in text
               and "starting a new session" in text for text in said)


def last_user_text(body: dict[str, Any]) -> str:
    """The text of a chat-completions request's last user message."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "\n".join(str(part.get("text", "")) for part in content
                                 if isinstance(part, dict))
            return str(content)
    return ""


def sloppy_reviewer(index: int, body: dict[str, Any]) -> Step:
    """A validator that first answers in prose, and in JSON once told what was wrong."""
    if "could not be used" in last_user_text(body):
        return Step(text=json.dumps(APPROVE))
    return Step(text="Looks fine to me, ship it!")


def test_roles_on_two_backends_and_a_malformed_answer_asked_again(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"gates": []}))
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), model_of_the_swarm) as claude_model, \
            FakeModel(OpenAIChat(), sloppy_reviewer) as opencode_model:
        (repo / ".sisyphus").mkdir()
        (repo / ".sisyphus" / "config.toml").write_text(
            '[brain]\nbackend = "claude"\n\n'
            '[roles.validator]\nbackend = "opencode"\nmodel = "fake/fake-model"\n')
        (repo / "opencode.json").write_text(json.dumps({"provider": {"fake": {
            "npm": "@ai-sdk/openai-compatible", "name": "Fake",
            "options": {"baseURL": f"{opencode_model.url}/v1", "apiKey": "fake-key"},
            "models": {"fake-model": {"name": "Fake model"}}}}}))
        done = sisyphus("run", "--headless", "--db", str(db), "--workspace", str(repo),
                        "--goal", GOAL, "--spec", str(spec),
                        env=claude_env(agent_env, claude_model), cwd=tmp_path)
        reviews = [b for b in opencode_model.posts() if b.get("tools")]
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    events = events_of(db)
    spawned = {p["agent"]: p["brain"] for _, t, _, p in events if t == "AGENT_SPAWNED"}
    assert (spawned["planner"], spawned["validator"], spawned["executor"]) == (
        "claude", "opencode", "claude")
    # The prose answer was sent back once, naming the missing field, in the same
    # session: the second request holds the first answer.
    assert len(reviews) == 2
    again = last_user_text(reviews[1])
    assert "could not be used" in again and "verdict" in again
    assert "Looks fine to me, ship it!" in json.dumps(reviews[1]["messages"])
    verdicts = [p["verdict"] for _, t, _, p in events if t == "REVIEW"]
    assert verdicts == ["approve"]
    sessions = [p["data"]["session_id"] for _, t, a, p in events
                if t == "AGENT_OUTPUT" and a == "validator" and p["kind"] == "session"]
    assert len(set(sessions)) == 1


def test_an_overloaded_model_is_waited_out_not_made_a_verdict(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    db = tmp_path / "swarm.db"
    # The first three calls get 529 (overloaded): one agent turn fails, whichever
    # agent's it is; the outage passes.
    with FakeModel(Anthropic(), model_of_the_swarm, fail_status=529, fail_times=3) as model:
        done = sisyphus("run", "--headless", "--db", str(db), "--workspace", str(repo),
                        "--goal", GOAL, "--brain", "claude",
                        env={**claude_env(agent_env, model), "CLAUDE_CODE_MAX_RETRIES": "0"},
                        cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "529" in done.stderr and "resuming from its checkpoint in 5.0s" in done.stderr
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    failed = [p for _, t, _, p in events_of(db) if t == "AGENT_FAILED"]
    assert failed == []  # a fault that passed, not a failure on the record


def test_agent_refuses_a_name_the_swarm_or_another_backend_has(repo: Path,
                                                                tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    env = dict(os.environ)
    for payload in ({"agent": "planner", "role": "planner", "skill": "planner",
                     "brain": "claude"},
                    {"agent": "asker", "role": "agent", "brain": "codex"}):
        subprocess.run([sys.executable, "-m", "sisyphus_tui", "emit", "AGENT_SPAWNED",
                        "--db", str(db), "--payload", json.dumps(payload)], check=True,
                       capture_output=True)
    head = len(events_of(db))
    swarm_agent = sisyphus("agent", "claude", "hi", "--name", "planner", "--workspace",
                           str(repo), "--db", str(db), env=env, cwd=tmp_path)
    assert swarm_agent.returncode == 2
    assert swarm_agent.stderr == ("sisyphus: error: 'planner' is this swarm's planner: give "
                                  "the agent another --name\n")
    other = sisyphus("agent", "claude", "hi", "--name", "asker", "--workspace", str(repo),
                     "--db", str(db), env=env, cwd=tmp_path)
    assert other.returncode == 2 and "'asker' runs on codex, not claude" in other.stderr
    assert len(events_of(db)) == head  # nothing written


def test_a_run_on_claude_killed_mid_step_resumes_with_the_same_brains(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    asked = threading.Event()
    release = threading.Event()

    def slow_executor(index: int, body: dict[str, Any]) -> Step:
        blocks = last_user_blocks(body)
        if last_tool(body) == "Read" and any(b.get("type") == "tool_result" for b in blocks):
            if not release.is_set():
                asked.set()
                release.wait(60)  # the host is killed while the executor's agent thinks
        return model_of_the_swarm(index, body)

    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), slow_executor) as model:
        env = claude_env(agent_env, model)
        host = subprocess.Popen([sys.executable, "-m", "sisyphus_tui", "run", "--headless",
                                 "--db", str(db), "--workspace", str(repo), "--goal", GOAL,
                                 "--brain", "claude"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert asked.wait(180), "the executor's agent never got to its edit"
            host.send_signal(signal.SIGKILL)
            host.wait(30)
        finally:
            release.set()
        # The same command, without --brain or --goal: the log says who thinks with what.
        again = sisyphus("run", "--headless", "--db", str(db), "--workspace", str(repo),
                         env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    events = events_of(db)
    edits = [p for _, t, _, p in events if t == "FILE_EDIT"]
    assert [(e["path"], e["how"]) for e in edits] == [("calc.py", "observed")]
    assert [t for _, t, _, _ in events].count("PLAN_INIT") == 1  # no step redone twice


def test_a_missing_login_stops_the_host_each_time_until_it_is_fixed(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    db = tmp_path / "swarm.db"
    args = ("run", "--headless", "--db", str(db), "--workspace", str(repo), "--goal", GOAL,
            "--brain", "claude")
    with FakeModel(Anthropic(), model_of_the_swarm) as model:
        keyless = {k: v for k, v in claude_env(agent_env, model).items()
                   if k != "ANTHROPIC_API_KEY"}
        for _ in range(2):  # the same command again: the same fault, never a verdict
            stopped = sisyphus(*args, env=keyless, cwd=tmp_path)
            assert stopped.returncode == 4, stopped.stdout + stopped.stderr
            assert "claude: Not logged in" in stopped.stderr
            assert "AgentFailed" not in stopped.stderr
            assert "claude: claude:" not in stopped.stderr
        done = sisyphus(*args, env=claude_env(agent_env, model), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_one_run_of_an_agent_at_a_time(repo: Path, tmp_path: Path,
                                       agent_env: dict[str, str]) -> None:
    asked = threading.Event()
    release = threading.Event()

    def script(index: int, body: dict[str, Any]) -> Step:
        asked.set()
        release.wait(60)
        return Step(text="one answer")

    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), script) as model:
        env = claude_env(agent_env, model)
        argv = [sys.executable, "-m", "sisyphus_tui", "agent", "claude", "hi", "--workspace",
                str(repo), "--db", str(db), "--name", "asker"]
        first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            assert asked.wait(120)
            second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True,
                                    text=True, timeout=120)
        finally:
            release.set()
        out, err = first.communicate(timeout=120)
    assert second.returncode == 2
    assert second.stderr == (f"sisyphus: error: agent 'asker' is already running here (pid "
                             f"{first.pid}): wait for it, or give this one another --name\n")
    assert first.returncode == 0 and out == "one answer\n", err
