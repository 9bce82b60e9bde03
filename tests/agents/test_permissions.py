"""Permission prompts answered from the supervisor, with the real CLIs: a tool call no
rule decides waits in the log (the agent ``needs input``) until ``sisyphus answer`` in
another shell allows or denies it; allow-always holds for the rest of the run; the
policy's timeout answers when nobody does; an edit inside the workspace never asks; an
ACP agent's request_permission is asked the same way."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui import permissions
from sisyphus_tui.agents import backend
from sisyphus_tui.agents.base import AgentEvent, AgentRequest, Answer, Permissions, Question
from sisyphus_tui.agents.runner import run_agent
from sisyphus_tui.stream import open_store
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.anthropic import Anthropic
from tests.agents.fakemodel.gemini import Gemini
from tests.agents.test_acp import gemini_request
from tests.agents.test_swarm_on_agents import (
    GOAL,
    calc_repo,
    claude_env,
    events_of,
    last_tool,
    last_user_blocks,
    model_of_the_swarm,
    sisyphus,
)

WRITE_A = "python3 -c \"open('a.txt','w').write('a')\""
WRITE_B = "python3 -c \"open('b.txt','w').write('b')\""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "notes.txt").write_text("status: draft\n")
    return root


def start_agent(repo: Path, db: Path, env: dict[str, str], name: str = "asker",
                prompt: str = "write a.txt") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sisyphus_tui", "agent", "claude", prompt,
                             "--workspace", str(repo), "--db", str(db), "--name", name],
                            cwd=repo.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(db: Path, type_: str, count: int = 1, timeout: float = 120) -> list[dict[str, Any]]:
    """The payloads of ``type_`` once there are ``count`` of them (polling the file: the
    log of another process has no event to wait on here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            found = [p for _, t, _, p in events_of(db) if t == type_]
            if len(found) >= count:
                return found
        time.sleep(0.05)
    raise AssertionError(f"no {count} {type_} within {timeout}s")


def agents_json(db: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    shown = sisyphus("agents", "--db", str(db), "--json", env=env, cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    return {row["agent"]: row for row in rows}


def finish(agent: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = agent.communicate(timeout=120)
    return agent.returncode, out, err


def test_a_shell_command_waits_for_an_answer_from_another_shell(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    steps = [Step(tool="shell", args={"command": WRITE_A}), Step(text="Wrote it.")]
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), steps) as model:
        env = claude_env(agent_env, model)
        agent = start_agent(repo, db, env)
        try:
            (asked,) = wait_for(db, "PERMISSION_REQUESTED")
            assert asked["agent"] == "asker" and asked["tool"] == "Bash"
            assert asked["input"]["command"] == WRITE_A
            assert agents_json(db, env, tmp_path)["asker"]["state"] == "needs_input"
            assert not (repo / "a.txt").exists()  # nothing ran while it waited
            posts = len(model.posts())
            answered = sisyphus("answer", "asker", "allow", "--db", str(db), env=env,
                                cwd=tmp_path)
            assert answered.returncode == 0, answered.stderr
            assert answered.stdout.startswith("allowed Bash for asker (request ")
            code, out, err = finish(agent)
        finally:
            agent.kill()
    assert code == 0, err
    assert out == "Wrote it.\n"
    # The person who ran it was told, on stderr, what it asks and how to answer.
    assert f"asker asks to use Bash: {WRITE_A}" in err
    assert f"answer it: sisyphus answer asker allow|deny --db {db}" in err
    assert (repo / "a.txt").read_text() == "a"
    assert len(model.posts()) > posts  # the model was asked again only after the answer
    events = events_of(db)
    (answer,) = [p for _, t, _, p in events if t == "PERMISSION_ANSWERED"]
    assert answer["decision"] == "allow" and answer["by"] == "human"
    said = [p for _, t, _, p in events if t == "AGENT_OUTPUT" and p["kind"] == "permission"]
    assert [(p["data"]["decision"], p["data"]["by"]) for p in said] == [("allow", "human")]
    # Answered and finished: nothing waits, and a second answer is refused in one line.
    again = sisyphus("answer", "asker", "deny", "--db", str(db), env=env, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "asker is not waiting for a permission answer" in again.stderr


def test_deny_with_a_message_reaches_the_model_and_always_holds(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    steps = [Step(tool="shell", args={"command": WRITE_A}),
             Step(tool="shell", args={"command": WRITE_B}),
             Step(tool="shell", args={"command": WRITE_A.replace("a.txt", "c.txt")}),
             Step(text="Tried all three.")]
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), steps) as model:
        env = claude_env(agent_env, model)
        agent = start_agent(repo, db, env)
        try:
            wait_for(db, "PERMISSION_REQUESTED")
            denied = sisyphus("answer", "asker", "deny", "--message",
                              "not a.txt [red]please[/]", "--db", str(db), env=env,
                              cwd=tmp_path)
            assert denied.returncode == 0, denied.stderr
            assert denied.stdout.startswith("denied Bash for asker")
            wait_for(db, "PERMISSION_REQUESTED", 2)
            always = sisyphus("answer", "asker", "allow", "--always", "--db", str(db),
                              env=env, cwd=tmp_path)
            assert always.returncode == 0, always.stderr
            assert "for the rest of the run" in always.stdout
            code, out, err = finish(agent)
        finally:
            agent.kill()
    assert code == 0, err
    assert not (repo / "a.txt").exists()
    assert (repo / "b.txt").read_text() == "b"
    assert (repo / "c.txt").read_text() == "a"  # allowed always: it did not ask again
    # The deny's message is what the model read as the tool's result.
    history = json.dumps(model.posts()[1]["messages"])
    assert "not a.txt [red]please[/]" in history
    events = events_of(db)
    assert len([p for _, t, _, p in events if t == "PERMISSION_REQUESTED"]) == 2
    said = [p["data"] for _, t, _, p in events
            if t == "AGENT_OUTPUT" and p["kind"] == "permission"]
    assert [(d["decision"], d["by"]) for d in said] == [
        ("deny", "human"), ("allow", "human"), ("allow", "policy")]


def test_the_policy_answers_on_its_timeout_and_an_edit_never_asks(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    (repo / ".sisyphus").mkdir()
    (repo / ".sisyphus" / "config.toml").write_text(
        '[brain]\nbackend = "claude"\nask_timeout_s = 1\non_timeout = "deny"\n')
    steps = [Step(tool="read", args={"path": "notes.txt"}),
             Step(tool="edit", args={"path": "notes.txt", "old": "draft", "new": "final"}),
             Step(tool="shell", args={"command": WRITE_A}),
             Step(text="Edited; the shell was refused.")]
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), steps) as model:
        env = claude_env(agent_env, model)
        done = sisyphus("agent", "claude", "edit and write", "--workspace", str(repo),
                        "--db", str(db), "--name", "asker", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (repo / "notes.txt").read_text() == "status: final\n"  # no question for it
    assert not (repo / "a.txt").exists()
    events = events_of(db)
    (asked,) = [p for _, t, _, p in events if t == "PERMISSION_REQUESTED"]
    assert asked["tool"] == "Bash" and asked["timeout_s"] == 1
    (answer,) = [p for _, t, _, p in events if t == "PERMISSION_ANSWERED"]
    assert (answer["decision"], answer["by"]) == ("deny", "timeout")
    # The agent's checkpoint holds the workspace as it left it (sisyphus restore).
    (checkpoint,) = [p for _, t, _, p in events if t == "CHECKPOINT"]
    assert checkpoint["workspace"] and len(checkpoint["workspace"]) >= 40


async def test_an_acp_agents_request_is_asked_and_answered(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    """gemini --acp: its shell command's request_permission waits for the log's answer
    (here from the same process, through permissions.answer, as a TUI gives it)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    store = await open_store(tmp_path / "swarm.db")
    steps = [Step(tool="shell", args={"command": WRITE_A}),
             Step(tool="shell", args={"command": WRITE_B}), Step(text="Done.")]
    seen: list[AgentEvent] = []
    always: set[str] = set()

    async def ask(question: Question) -> Answer:
        answer = await permissions.ask(store, "gem", question, message=None, always=always)
        if answer.always:
            always.add(question.kind or question.tool)  # (what Turn.ask's ledger keeps)
        return answer

    async def answer_when_asked() -> None:
        async for event in store.tail(1, types=["PERMISSION_REQUESTED"]):
            await permissions.answer(store, "gem", "allow", always=True,
                                     request=event.payload["request"])
            return

    try:
        with FakeModel(Gemini(), steps) as model:
            answering = asyncio.create_task(answer_when_asked())
            request = gemini_request(ws, model, agent_env, "write a.txt", ask=ask,
                                     permissions=Permissions())
            result = await run_agent(backend("acp"), request, seen.append)
            await asyncio.wait_for(answering, 5)
    finally:
        await store.close()
    assert result.ok, (result.error, result.stderr_tail)
    asked = [e for e in seen if e.kind == "permission"]
    # Allowed always: the agent was answered with its allow_always option, so it did
    # not ask again for the second command (and, would it have, its kind is allowed).
    assert [(e.data["decision"], e.data["by"]) for e in asked] == [("allow", "human")]
    assert asked[0].data["kind"] == "execute" and always == {"execute"}
    assert (ws / "a.txt").read_text() == "a" and (ws / "b.txt").read_text() == "b"


def test_no_asker_denies_what_would_ask() -> None:
    assert Permissions().decide("Bash", {"command": "ls"}) == "ask"
    assert Permissions(allow=("Bash",)).decide("Bash", {"command": "ls"}) == "allow"
    assert Permissions(allow=("Bash",), ask=("Bash(rm*)",)).decide(
        "Bash", {"command": "rm -rf x"}) == "ask"
    assert Permissions(deny=("Bash",), ask=("Bash",)).decide("Bash") == "deny"
    assert AgentRequest(prompt="x", workspace=Path(".")).ask is None


def test_a_swarms_executor_asks_and_the_run_goes_on_once_answered(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    """`sisyphus run` on claude: the executor's agent runs the tests itself (Bash, which
    no rule allows) before its edit: the run waits for the answer, then completes."""
    root = calc_repo(tmp_path / "repo")
    pytest_cmd = "python3 -m pytest -q -p no:cacheprovider"

    def model(index: int, body: dict[str, Any]) -> Step:
        blocks = last_user_blocks(body)
        prompt = "\n".join(str(b.get("text", "")) for b in blocks)
        if any(b.get("type") == "tool_result" for b in blocks) and last_tool(body) == "Bash":
            return Step(tool="read", args={"path": "calc.py"})
        if "Now make" in prompt:
            return Step(tool="shell", args={"command": pytest_cmd})
        return model_of_the_swarm(index, body)

    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), model) as fake:
        env = claude_env(agent_env, fake)
        host = subprocess.Popen(
            [sys.executable, "-m", "sisyphus_tui", "run", "--headless", "--db", str(db),
             "--workspace", str(root), "--goal", GOAL, "--brain", "claude"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            (asked,) = wait_for(db, "PERMISSION_REQUESTED", timeout=240)
            assert (asked["agent"], asked["tool"]) == ("executor", "Bash")
            assert asked["input"]["command"] == pytest_cmd
            assert agents_json(db, env, tmp_path)["executor"]["state"] == "needs_input"
            answered = sisyphus("answer", "executor", "allow", "--db", str(db), env=env,
                                cwd=tmp_path)
            assert answered.returncode == 0, answered.stderr
            out, err = host.communicate(timeout=240)
        finally:
            host.kill()
    assert host.returncode == 0, out + err
    assert (root / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    events = events_of(db)
    (answer,) = [p for _, t, _, p in events if t == "PERMISSION_ANSWERED"]
    assert (answer["agent"], answer["decision"], answer["by"]) == ("executor", "allow", "human")
    ran = [p for _, t, a, p in events if t == "AGENT_OUTPUT" and a == "executor"
           and p["kind"] == "tool_result"]
    assert any("passed" in p["text"] or "failed" in p["text"] for p in ran)  # pytest ran


def test_a_question_of_a_killed_run_is_closed_by_the_next_run(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    steps = [Step(tool="shell", args={"command": WRITE_A}), Step(text="Wrote it.")]
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), steps) as model:
        env = claude_env(agent_env, model)
        agent = start_agent(repo, db, env)
        try:
            wait_for(db, "PERMISSION_REQUESTED")
        finally:
            agent.kill()  # (SIGKILL: nothing of the run says it ended)
            agent.communicate(timeout=60)
    with FakeModel(Anthropic(), [Step(text="Nothing to do.")]) as model:
        env = claude_env(agent_env, model)
        again = sisyphus("agent", "claude", "anything?", "--workspace", str(repo), "--db",
                         str(db), "--name", "asker", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (closed,) = [p for _, t, _, p in events_of(db) if t == "PERMISSION_ANSWERED"]
    assert (closed["decision"], closed["by"]) == ("deny", "policy")
    late = sisyphus("answer", "asker", "allow", "--db", str(db), env=env, cwd=tmp_path)
    assert late.returncode == 2 and "not waiting" in late.stderr
    assert agents_json(db, env, tmp_path)["asker"]["state"] == "done"


def test_an_ask_rule_keeps_its_tool_out_of_claudes_own_allow_rules(tmp_path: Path) -> None:
    from sisyphus_tui.agents.claude import ClaudeBackend

    rules = Permissions(allow=("Bash", "Read"), ask=("Bash(git push*)",))
    argv = ClaudeBackend().argv(AgentRequest(prompt="x", workspace=tmp_path,
                                             permissions=rules))
    assert "--allowedTools=Read" in argv  # Bash reaches us, where the ask rule decides
    assert rules.decide("Bash", {"command": "git push origin"}) == "ask"
    assert rules.decide("Bash", {"command": "ls"}) == "allow"


def test_restore_refuses_while_an_agent_runs_in_the_workspace(tmp_path: Path) -> None:
    import fcntl
    import os

    from sisyphus_tui.cli import _agents_running

    folder = tmp_path / ".sisyphus" / "agents" / "asker"
    folder.mkdir(parents=True)
    assert _agents_running(tmp_path) == []
    fd = os.open(folder / "running.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242")
        assert _agents_running(tmp_path) == ["asker (pid 4242)"]
    finally:
        os.close(fd)
    assert _agents_running(tmp_path) == []


async def test_an_always_kind_is_allowed_without_asking_and_the_first_answer_wins(
        tmp_path: Path) -> None:
    store = await open_store(tmp_path / "swarm.db")
    try:
        shell = Question("call-1", "echo hi", {"command": "echo hi"}, kind="execute")
        answer = await permissions.ask(store, "gem", shell, message=None,
                                       always={"execute"})
        assert (answer.decision, answer.by) == ("allow", "policy")
        assert await store.head() == 0  # nothing asked, nothing written

        async def two_people() -> list[object]:
            async for event in store.tail(1, types=["PERMISSION_REQUESTED"]):
                request = event.payload["request"]
                return list(await asyncio.gather(
                    permissions.answer(store, "gem", "deny", request=request),
                    permissions.answer(store, "gem", "allow", request=request),
                    return_exceptions=True))
            raise AssertionError("unreachable")

        people = asyncio.create_task(two_people())
        answer = await permissions.ask(store, "gem", shell, message=None)
        results = await people
    finally:
        await store.close()
    # One of the two answers is the answer; the other was told it came second.
    assert sum(isinstance(r, int) for r in results) == 1
    loser = next(r for r in results if not isinstance(r, int))
    assert "was answered already" in str(loser)
    won = "deny" if isinstance(results[0], int) else "allow"
    assert (answer.decision, answer.by) == (won, "human")


async def test_a_persons_time_does_not_count_against_the_turns(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    """A turn limited to 6 s whose question a person takes 8 s to answer still ends
    well: the turn's clock stops while the question waits."""
    ws = tmp_path / "ws"
    ws.mkdir()
    steps = [Step(tool="shell", args={"command": WRITE_A}), Step(text="Wrote it.")]
    asked: list[float] = []

    async def slow_person(question: Question) -> Answer:
        asked.append(time.monotonic())
        await asyncio.sleep(8.0)  # (the person thinking: the point of the test)
        return Answer("allow", by="human")

    with FakeModel(Anthropic(), steps) as model:
        env = claude_env(agent_env, model)
        request = AgentRequest(prompt="write a.txt", workspace=ws, env=env, timeout_s=6.0,
                               grace_s=1.0, ask=slow_person)
        result = await run_agent(backend("claude"), request)
    assert result.ok and not result.timed_out, (result.error, result.stderr_tail)
    assert asked and (ws / "a.txt").read_text() == "a"
    assert result.duration_s > 8.0
