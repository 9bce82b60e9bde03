"""Supervising real agents: a stalled agent is seen stalled, cancelled (Claude by its
protocol's interrupt; Gemini, which ignores SIGINT, by SIGKILL) and restarted to the end
of its turn; a backend's concurrency cap holds a second agent ``queued`` until the first
is done; and a host killed with SIGKILL leaves no process of its agents (nor the
``sleep`` a tool of theirs ran in a session of its own). The real CLIs (pinned), against
the fake model servers on 127.0.0.1; the host in the test's loop or as ``sisyphus run``;
cancel, restart and the agents' states through the real ``sisyphus`` commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.agents.config import BrainConfig, RunConfig
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store
from sisyphus_tui.stream.base import Event, EventStore
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.anthropic import Anthropic
from tests.agents.fakemodel.gemini import Gemini
from tests.agents.fakemodel.openai_chat import OpenAIChat
from tests.agents.processes import alive, group_pids
from tests.agents.test_gemini import gemini_env  # noqa: F401  (a fixture: quiet settings)

GEMINI_MODEL = "gemini-2.5-flash"  # named: no routing call before each turn
ANSWER = {"text": "calc.add is defined in calc.py", "data": {}}
# (Claude answers a schema through its StructuredOutput tool.)
CLAUDE_ANSWER = Step(tool="StructuredOutput", args=ANSWER)


def claude_answers(index: int, body: dict[str, Any]) -> Step:
    """The answer, whatever the conversation held before (a resumed, interrupted one);
    once the tool has run, the turn is over."""
    last = (body.get("messages") or [{}])[-1].get("content")
    if isinstance(last, list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                      for b in last):
        return Step(text="Done.")
    return CLAUDE_ANSWER


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small repository an agent can look at."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return root.resolve()


@contextlib.asynccontextmanager
async def hosted(db: Path, workspace: Path, config: RunConfig
                 ) -> AsyncIterator[tuple[EventStore, Swarm]]:
    """A swarm hosting ``db`` in this loop (no task: it runs what is spawned), stopped
    (as a person would: CONTROL stop) at the end."""
    async with await open_store(db) as store:
        swarm = Swarm(store, workspace, config=config, write_ledger=False)
        running = asyncio.create_task(swarm.run())
        try:
            await asyncio.wait_for(swarm.ledger_at(1), 30)  # (its own registrations)
            yield store, swarm
        finally:
            if not running.done():
                await store.append("CONTROL", {"action": "stop"}, actor="human", to="swarm")
            await asyncio.wait_for(running, 60)


async def first(store: EventStore, type: str, within_s: float = 90, *,
                by: str | None = None, after: int = 0, **fields: Any) -> Event:
    """The first event of ``type`` after offset ``after`` whose payload has ``fields``
    (and, with ``by``, a result from that agent), waited for."""
    async def find() -> Event:
        async for event in store.tail(after + 1):
            if event.type == type and all(event.payload.get(k) == v
                                          for k, v in fields.items()) and (
                    by is None or event.payload.get("data", {}).get("agent") == by):
                return event
        raise AssertionError("unreachable: a tail never ends")

    return await asyncio.wait_for(find(), within_s)


async def stall_since_it_spoke(store: EventStore, agent: str) -> Event:
    """The AGENT_STALLED of ``agent`` after its last output (polled: a CLI slow to start
    may be stalled, then speak, then stall for good)."""
    while True:
        events = (await store.read(1, 10_000)).events
        spoke = max((e.offset for e in events if e.type == "AGENT_OUTPUT"
                     and e.payload["agent"] == agent), default=0)
        stalls = [e for e in events if e.type == "AGENT_STALLED" and e.offset > spoke
                  and e.payload["agent"] == agent]
        if stalls:
            return stalls[-1]
        await asyncio.sleep(0.05)


async def sisyphus(*args: str, db: Path) -> tuple[int, str, str]:
    """The real command, as a person runs it from another shell."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sisyphus_tui", *args, "--db", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def shown_state(db: Path, agent: str) -> str:
    """``agent``'s state as ``sisyphus agents --json`` shows it."""
    code, out, err = await sisyphus("agents", "--json", db=db)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    return str(next(row["state"] for row in rows if row["agent"] == agent))


async def until(condition: Callable[[], bool], within_s: float = 30) -> None:
    """Wait for ``condition`` (polled: /proc has no event for a process's end)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def stalled_gemini(repo: Path, tmp_path: Path, agent_env: dict[str, str]
                   ) -> tuple[FakeModel, BrainConfig]:
    """Gemini on a model that stalls (run without relaunching itself, Gemini 0.61 ends
    on SIGINT)."""
    model = FakeModel(Gemini(), [Step(text=json.dumps(ANSWER))], stall=True)
    env = {**agent_env, "GOOGLE_GEMINI_BASE_URL": model.url, "GEMINI_API_KEY": "fake-key"}
    return model, BrainConfig(backend="gemini", model=GEMINI_MODEL, stall_s=1.5, env=env)


def stalled_deaf_opencode(repo: Path, tmp_path: Path, agent_env: dict[str, str]
                          ) -> tuple[FakeModel, BrainConfig]:
    """opencode on a model that stalls, deaf to SIGINT (SIG_IGN survives exec), as
    FIELD-NOTES found it: only SIGKILL ends it."""
    model = FakeModel(OpenAIChat(), [Step(text=json.dumps(ANSWER))], stall=True)
    (repo / "opencode.json").write_text(json.dumps({"provider": {"fake": {
        "npm": "@ai-sdk/openai-compatible", "name": "Fake",
        "options": {"baseURL": f"{model.url}/v1", "apiKey": "fake-key"},
        "models": {"fake-model": {"name": "Fake model"}}}}}))
    wrapper = tmp_path / "deaf-opencode"
    wrapper.write_text("#!/bin/sh\ntrap '' INT\nexec opencode \"$@\"\n")
    wrapper.chmod(0o755)
    return model, BrainConfig(backend="opencode", model="fake/fake-model", stall_s=1.5,
                              env=agent_env, command=(str(wrapper),))


@pytest.mark.parametrize(("setup", "how"), [(stalled_deaf_opencode, "sigkill"),
                                            (stalled_gemini, "sigint")],
                         ids=["opencode-deaf-to-sigint", "gemini"])
async def test_a_stalled_agent_is_cancelled_then_restarted_to_the_end(
        repo: Path, tmp_path: Path, gemini_env: dict[str, str], how: str,  # noqa: F811
        setup: Callable[[Path, Path, dict[str, str]], tuple[FakeModel, BrainConfig]]
        ) -> None:
    db = tmp_path / "swarm.db"
    workspace = repo
    server, brain = setup(repo, tmp_path, gemini_env)  # (agent_env, and Gemini's settings)
    with server as model:
        config = RunConfig(brain=brain)
        async with hosted(db, repo, config) as (store, swarm):
            await swarm.spawn("researcher", "looker", "Where is calc.add defined?",
                              thinking=None, parent="human")
            task = await first(store, "MESSAGE", kind="task")
            # The CLI is up and has asked the model, which holds its stream open and
            # says nothing: the host says so.
            await until(lambda: bool(model.posts()), within_s=60)
            stalled = await asyncio.wait_for(stall_since_it_spoke(store, "looker"), 60)
            assert stalled.payload["message"] == task.offset
            assert stalled.payload["silent_s"] >= 1.5
            assert await shown_state(db, "looker") == "stalled"
            running = group_pids(workspace)
            assert running, "the agent's CLI is not running"

            code, out, err = await sisyphus("cancel", "looker", db=db)
            assert code == 0, err
            assert "cancel of looker's turn requested (event" in out
            cancelled = await first(store, "AGENT_CANCELLED", agent="looker")
            # Neither has a protocol cancel: SIGINT ended it, or, ignored, SIGKILL.
            assert cancelled.payload == {"agent": "looker", "message": task.offset,
                                         "how": how}
            await until(lambda: not any(alive(pid) for pid in running))
            assert group_pids(workspace) == set()
            # The message is still unhandled, and the agent shows cancelled.
            assert await store.cursor("looker") < task.offset
            assert await shown_state(db, "looker") == "cancelled"
            head = await store.head()
            code, _, err = await sisyphus("cancel", "looker", db=db)
            assert code == 2 and "cancelled already" in err and "\n" not in err.strip()
            assert await store.head() == head  # refused: nothing written

            model.stall = False  # the model answers again
            code, out, err = await sisyphus("restart", "looker", db=db)
            assert code == 0, err
            result = await first(store, "MESSAGE", kind="result", within_s=120)
            assert result.payload["text"] == ANSWER["text"]
            assert await store.cursor("looker") >= task.offset
    # The turn was done again: the same message, a second attempt on the record.
    async with await open_store(db) as store:
        page = await store.read(1, 10_000, types=["TURN_STARTED"])
    attempts = [e.payload for e in page.events if e.payload["agent"] == "looker"]
    assert [(a["message"], a["attempt"]) for a in attempts] == [(task.offset, 1),
                                                                (task.offset, 2)]


def claude_env(agent_env: dict[str, str], model: FakeModel) -> dict[str, str]:
    return {**agent_env, "ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-fake"}


async def test_a_stalled_claude_is_cancelled_by_its_protocol_and_stays_cancelled(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), claude_answers, stall=True) as model:
        config = RunConfig(brain=BrainConfig(backend="claude", stall_s=1.0,
                                             env=claude_env(agent_env, model)))
        async with hosted(db, repo, config) as (store, swarm):
            await swarm.spawn("researcher", "looker", "Where is calc.add defined?",
                              thinking=None, parent="human")
            await until(lambda: bool(model.posts()), within_s=60)
            await asyncio.wait_for(stall_since_it_spoke(store, "looker"), 60)
            code, _, err = await sisyphus("cancel", "looker", db=db)
            assert code == 0, err
            cancelled = await first(store, "AGENT_CANCELLED", agent="looker")
            # Claude's stream-json interrupt ended the turn: no signal was needed.
            assert cancelled.payload["how"] == "protocol"
            await until(lambda: not group_pids(repo))
            # What the swarm does not run has no turn to cancel.
            code, _, err = await sisyphus("cancel", "swarm", db=db)
            assert code == 2 and "not an agent the swarm runs" in err
        model.stall = False
        # The next host runs its agents, but not the cancelled one, until its restart.
        async with hosted(db, repo, config) as (store, swarm):
            await swarm.spawn("researcher", "other", "Where are the tests?", thinking=None,
                              parent="human")
            await first(store, "MESSAGE", kind="result", by="other")
            assert await shown_state(db, "looker") == "cancelled"
            code, _, err = await sisyphus("restart", "looker", db=db)
            assert code == 0, err
            restarted = (await first(store, "CONTROL", action="restart")).offset
            await first(store, "MESSAGE", kind="result", by="looker", within_s=120)
            events = (await store.read(1, 10_000, types=["TURN_STARTED"])).events
    redone = [e.offset for e in events if e.payload["agent"] == "looker"]
    assert len(redone) == 2 and redone[1] > restarted  # redone only once restarted


async def test_a_stalled_agent_restarted_is_cancelled_then_done_again(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    """R on a stuck agent: its turn is stopped (AGENT_CANCELLED) and done again from its
    checkpoint, in one request."""
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), claude_answers, stall=True) as model:
        config = RunConfig(brain=BrainConfig(backend="claude", stall_s=1.0,
                                             env=claude_env(agent_env, model)))
        async with hosted(db, repo, config) as (store, swarm):
            await swarm.spawn("researcher", "looker", "Where is calc.add defined?",
                              thinking=None, parent="human")
            await until(lambda: bool(model.posts()), within_s=60)
            await asyncio.wait_for(stall_since_it_spoke(store, "looker"), 60)
            model.stall = False  # (the redo's model answers)
            code, out, err = await sisyphus("restart", "looker", db=db)
            assert code == 0, err
            cancelled = await first(store, "AGENT_CANCELLED", agent="looker")
            assert cancelled.payload["how"] == "protocol"
            await first(store, "MESSAGE", kind="result", by="looker", within_s=120)
            events = (await store.read(1, 10_000, types=["TURN_STARTED"])).events
    attempts = [e.payload["attempt"] for e in events if e.payload["agent"] == "looker"]
    assert attempts == [1, 2]


async def test_the_cap_holds_the_second_agent_queued_until_the_first_is_done(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    db = tmp_path / "swarm.db"
    thinking = threading.Event()
    release = threading.Event()

    def script(index: int, body: dict[str, Any]) -> Step:
        if "first question" in json.dumps(body.get("messages")):
            thinking.set()
            release.wait(60)  # the first agent's turn goes on until the test lets it
        return claude_answers(index, body)

    with FakeModel(Anthropic(), script) as model:
        config = RunConfig(brain=BrainConfig(backend="claude",
                                             env=claude_env(agent_env, model)),
                           concurrency={"claude": 1})
        async with hosted(db, repo, config) as (store, swarm):
            await swarm.spawn("researcher", "one", "first question", thinking=None,
                              parent="human")
            await asyncio.to_thread(thinking.wait, 60)
            await swarm.spawn("researcher", "two", "second question", thinking=None,
                              parent="human")
            queued = await first(store, "AGENT_QUEUED", agent="two")
            assert queued.payload == {"agent": "two", "backend": "claude", "running": 1,
                                      "cap": 1}
            assert await shown_state(db, "two") == "queued"
            assert await shown_state(db, "one") == "working"
            # Only the first agent's CLI runs, and only it has asked the model.
            assert all("second question" not in json.dumps(body)
                       for body in model.posts())
            # A turn waiting for its slot is cancelled with no process to stop; its
            # restart waits for the slot again (and says so again).
            code, _, err = await sisyphus("cancel", "two", db=db)
            assert code == 0, err
            cancelled = await first(store, "AGENT_CANCELLED", agent="two")
            assert cancelled.payload["how"] == "none"
            assert await shown_state(db, "two") == "cancelled"
            code, _, err = await sisyphus("restart", "two", db=db)
            assert code == 0, err
            await first(store, "AGENT_QUEUED", agent="two", after=cancelled.offset)
            release.set()
            await first(store, "MESSAGE", kind="result", by="two", within_s=120)
            events = (await store.read(1, 10_000)).events
    assert [e.payload["data"]["agent"] for e in events
            if e.type == "MESSAGE" and e.payload["kind"] == "result"] == ["one", "two"]
    outputs = [e for e in events if e.type == "AGENT_OUTPUT"]
    first_done = max(e.offset for e in outputs if e.payload["agent"] == "one")
    second_began = min(e.offset for e in outputs if e.payload["agent"] == "two")
    assert first_done < second_began  # the second ran once the first had finished
    assert [e.payload["agent"] for e in events if e.type == "AGENT_QUEUED"] == ["two", "two"]


def processes_named(prefix: str) -> list[int]:
    """The pids whose command line starts with ``prefix``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith(prefix) and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_a_host_killed_with_sigkill_leaves_no_agent_process(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    import subprocess
    import time

    marker = "sleep 987.25"  # the planner's shell tool: long, and nobody else's

    def planner(index: int, body: dict[str, Any]) -> Step:
        return Step(tool="shell", args={"command": marker})

    (repo / ".sisyphus").mkdir()
    (repo / ".sisyphus" / "config.toml").write_text(
        '[brain]\nbackend = "claude"\nallow = ["Bash"]\n')
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), planner) as model:
        host = subprocess.Popen(
            [sys.executable, "-m", "sisyphus_tui", "run", "--headless", "--db", str(db),
             "--workspace", str(repo), "--goal", "fix calc.add"],
            cwd=tmp_path, env={**os.environ, **claude_env(agent_env, model)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not processes_named(marker):
                assert host.poll() is None, "the host ended before its agent's tool ran"
                assert time.monotonic() < deadline, "the agent's tool never ran"
                time.sleep(0.05)  # (polling /proc: no event says a process started)
            tool = processes_named(marker)
            agents = group_pids(repo)  # the watchdog, claude, its shell, sleep
            assert set(tool) <= agents and len(agents) >= 3
            # The tool runs in a session of its own: a process group kill misses it.
            assert os.getsid(tool[0]) != os.getsid(min(agents))
            host.send_signal(signal.SIGKILL)
            host.wait(30)
            deadline = time.monotonic() + 30
            while any(alive(pid) for pid in agents) or processes_named(marker):
                assert time.monotonic() < deadline, [p for p in agents if alive(p)]
                time.sleep(0.05)
            assert group_pids(repo) == set()
        finally:
            for pid in group_pids(repo) | set(processes_named(marker)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_slots_are_first_come_first_served_and_a_cancelled_wait_gives_way(
        tmp_path: Path) -> None:
    async with await open_store(tmp_path / "swarm.db") as store:
        swarm = Swarm(store, tmp_path, config=RunConfig(concurrency={"claude": 1}),
                      write_ledger=False)
        order: list[str] = []
        held = {name: asyncio.Event() for name in ("one", "two", "three", "four")}

        async def turn(name: str) -> None:
            async with swarm.agent_turn(name, "claude", 1):
                order.append(name)
                await held[name].wait()

        async def queued() -> list[str]:
            page = await store.read(1, 100, types=["AGENT_QUEUED"])
            return [e.payload["agent"] for e in page.events]

        tasks = {"one": asyncio.create_task(turn("one"))}
        await until(lambda: order == ["one"], within_s=10)
        for name in ("two", "three", "four"):  # each queued before the next comes
            tasks[name] = asyncio.create_task(turn(name))
            await first(store, "AGENT_QUEUED", agent=name, within_s=10)
        assert order == ["one"]
        tasks["two"].cancel()  # (a cancel of a queued turn: no process to stop)
        with pytest.raises(asyncio.CancelledError):
            await tasks["two"]
        held["one"].set()
        await until(lambda: order == ["one", "three"], within_s=10)
        held["three"].set()
        await until(lambda: order == ["one", "three", "four"], within_s=10)
        held["four"].set()
        await asyncio.gather(tasks["one"], tasks["three"], tasks["four"])
        # One AGENT_QUEUED per wait; and the slot is free again.
        assert await queued() == ["two", "three", "four"]
        assert swarm._slots["claude"].running == set()
        assert not swarm._slots["claude"].waiting
