"""The TUI attached to a database shows a real agent live: ``sisyphus agent claude`` (the
real CLI, on the fake Anthropic API) runs in another process while the app watches; the
agent's row says it is working and what it does, and its output rows reach the stream
pane while its turn is still running, its text shown literally."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.widgets.event_stream import EventStream
from sisyphus_tui.tui.widgets.panes import AgentsTable
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.anthropic import Anthropic
from tests.tui.test_app import until


def screen_of(widget: Any) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


async def test_the_app_shows_a_real_agent_while_its_turn_runs(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    release = threading.Event()

    def script(index: int, body: dict[str, Any]) -> Step:
        if index == 0:
            return Step(text="Reading \x1b[31mcalc.py[/bold]", tool="read",
                        args={"path": "calc.py"})
        release.wait(60)  # the turn is still running while the app is looked at
        return Step(text="calc.add subtracts.")

    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    db = tmp_path / "swarm.db"
    async with await open_store(db):
        pass
    with FakeModel(Anthropic(), script) as model:
        env = {**os.environ, **agent_env, "ANTHROPIC_BASE_URL": model.url,
               "ANTHROPIC_API_KEY": "sk-fake"}
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sisyphus_tui", "agent", "claude", "What does add do?",
            "--workspace", str(workspace), "--db", str(db), "--name", "asker", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            app = SisyphusApp(db=db)
            async with app.run_test(size=(160, 40)) as pilot:
                stream, agents = app.query_one(EventStream), app.query_one(AgentsTable)
                # Mid-turn: the tool call and its result are on screen, the agent working.
                await until(pilot, lambda: "AGENT_OUTPUT" in screen_of(stream)
                            and app.ledger.agents.get("asker") is not None
                            and app.ledger.agents["asker"].detail.startswith("tool_result"),
                            120)
                assert agent.returncode is None  # (its turn has not ended)
                await until(pilot, lambda: "asker" in screen_of(agents)
                            and "working" in screen_of(agents), 30)
                await until(pilot, lambda: "Reading \\x1b[31mcalc.py[/bold]"
                            in screen_of(stream), 30)  # the agent's text, literally
                assert "\x1b" not in screen_of(stream) + screen_of(agents)
                release.set()
                await until(pilot, lambda: app.ledger.agents["asker"].state == "done", 120)
                await until(pilot, lambda: "done" in screen_of(agents), 30)
        finally:
            release.set()
            out, err = await asyncio.wait_for(agent.communicate(), 120)
    assert agent.returncode == 0, err.decode()
    assert out.decode() == "calc.add subtracts.\n"


async def test_a_real_agents_questions_answered_from_the_tui(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    """``sisyphus agent claude`` in another process asks twice (two shell commands no
    rule allows); the app, attached to its database, answers the first allow once and
    the second deny with a message, through its dialog: the first runs, the second does
    not, and the model reads the message."""
    from sisyphus_tui import permissions
    from sisyphus_tui.tui.screens.permission import PermissionScreen
    from sisyphus_tui.tui.widgets.panes import StatusLine

    write_a = "python3 -c \"open('a.txt','w').write('a')\""
    write_b = "python3 -c \"open('b.txt','w').write('b')\""
    steps = [Step(tool="shell", args={"command": write_a}),
             Step(tool="shell", args={"command": write_b}), Step(text="Tried both.")]
    workspace = tmp_path / "ws"
    workspace.mkdir()
    db = tmp_path / "swarm.db"
    async with await open_store(db):
        pass
    with FakeModel(Anthropic(), steps) as model:
        env = {**os.environ, **agent_env, "ANTHROPIC_BASE_URL": model.url,
               "ANTHROPIC_API_KEY": "sk-fake"}
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sisyphus_tui", "agent", "claude", "write two files",
            "--workspace", str(workspace), "--db", str(db), "--name", "asker", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            app = SisyphusApp(db=db)
            async with app.run_test(size=(120, 40)) as pilot:
                await until(pilot, lambda: len(permissions.pending(app.ledger)) == 1, 120)
                await until(pilot, lambda: "needs input" in screen_of(
                    app.query_one(AgentsTable)), 10)
                await until(pilot, lambda: "input" in screen_of(app.query_one(StatusLine)), 10)
                await pilot.press("a")
                await until(pilot, lambda: isinstance(app.screen, PermissionScreen), 10)
                await pilot.press("1")  # allow once
                await until(pilot, lambda: (workspace / "a.txt").exists(), 120)
                await until(pilot, lambda: len(permissions.pending(app.ledger)) == 1
                            and "b.txt" in str(permissions.pending(app.ledger)), 120)
                await pilot.press("a")
                await until(pilot, lambda: isinstance(app.screen, PermissionScreen), 10)
                await pilot.press("3")  # deny: the message first
                await pilot.press(*"not b")
                await pilot.press("enter")
                await until(pilot, lambda: app.ledger.agents["asker"].state == "done", 120)
        finally:
            out, err = await asyncio.wait_for(agent.communicate(), 120)
    assert agent.returncode == 0, err.decode()
    assert out.decode() == "Tried both.\n"
    assert (workspace / "a.txt").read_text() == "a" and not (workspace / "b.txt").exists()
    assert "not b" in str(model.posts()[-1]["messages"])
