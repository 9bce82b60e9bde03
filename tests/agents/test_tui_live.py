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
