"""The runner on a small real CLI of our own (a Python script speaking JSON lines): the
prompt is written within the turn's time, and a log that cannot take an event asks the
CLI to stop before it is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sisyphus_tui.agents.base import AgentEvent, AgentRequest, Backend, Parser
from sisyphus_tui.agents.runner import run_agent, run_resuming
from tests.agents.processes import alive


class LineParser(Parser):
    def read(self, obj: dict[str, Any]) -> list[AgentEvent]:
        if obj.get("type") == "done":
            return [AgentEvent("finished", "ok", {"stop_reason": "end_turn"})]
        return [AgentEvent("text", str(obj.get("text", "")))]


class Script(Backend):
    """A CLI that is a Python script (``request.command[1]`` its source)."""

    name = "script"
    binary = sys.executable
    stdin: ClassVar[bool] = True

    def argv(self, request: AgentRequest) -> list[str]:
        return []

    def executable(self, request: AgentRequest) -> str:
        return sys.executable

    def first_input(self, request: AgentRequest) -> bytes | None:
        return request.prompt.encode()

    def done(self, event: AgentEvent) -> bool:
        return event.kind == "finished"

    def parser(self) -> Parser:
        return LineParser()


def request(tmp_path: Path, source: str, prompt: str = "hi", **fields: Any) -> AgentRequest:
    return AgentRequest(prompt, tmp_path, command=(sys.executable, "-c", source),
                        grace_s=1.0, **fields)


async def test_a_cli_that_never_reads_its_prompt_times_out(tmp_path: Path) -> None:
    never_reads = "import time\nprint('{\"text\": \"up\"}', flush=True)\ntime.sleep(60)\n"
    started = time.monotonic()
    result = await run_agent(Script(), request(tmp_path, never_reads, "x" * (4 << 20),
                                               timeout_s=1.0))
    assert result.timed_out and result.error == "script timed out after 1s"
    assert time.monotonic() - started < 10  # the timeout, then SIGINT's grace


async def test_a_log_that_fails_asks_the_cli_to_stop_first(tmp_path: Path) -> None:
    marker = tmp_path / "asked"
    polite = (f"import signal, sys, time\n"
              f"def bye(*_):\n    open({str(marker)!r}, 'w').close(); sys.exit(0)\n"
              f"signal.signal(signal.SIGINT, bye)\n"
              f"print('{{\"text\": \"one\"}}', flush=True)\ntime.sleep(60)\n")

    def refuse(event: AgentEvent) -> None:
        raise OSError("the log is gone")

    with pytest.raises(OSError, match="the log is gone"):
        await asyncio.wait_for(run_agent(Script(), request(tmp_path, polite,
                                                           timeout_s=30.0), refuse), 20)
    assert marker.exists()  # SIGINT came first: it could save its session


PROJECT = Path(__file__).resolve().parents[2]
GRANDCHILD = ("import os, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
              "time.sleep(600)\n")
LEAVES_A_GRANDCHILD = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', {code!r}, {pidfile!r}])\n"
    "print('{{\"text\": \"working\"}}', flush=True)\n"
    "time.sleep(600)\n")
HOST = ("import asyncio, sys\n"
        "from pathlib import Path\n"
        "from sisyphus_tui.agents.base import AgentRequest\n"
        "from sisyphus_tui.agents.runner import run_agent\n"
        "from tests.agents.test_runner import Script\n"
        "ws, state, cli = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]\n"
        "asyncio.run(run_agent(Script(), AgentRequest('go', ws, command=(sys.executable, "
        "'-c', cli), state_dir=state, timeout_s=600)))\n")




async def test_what_a_killed_host_left_running_is_ended_before_the_agent_runs_again(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    pidfile = tmp_path / "grandchild.pid"
    cli = LEAVES_A_GRANDCHILD.format(code=GRANDCHILD, pidfile=str(pidfile))
    host = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOST, str(tmp_path), str(state), cli,
        cwd=PROJECT)
    for _ in range(1000):  # (the grandchild says its pid once it runs)
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.01)
    grandchild = int(pidfile.read_text())
    host.kill()  # SIGKILL: the CLI gets its parent-death signal, its child does not
    await host.wait()
    assert alive(grandchild)
    try:
        quick = "print('{\"type\": \"done\"}', flush=True)\n"
        result = await run_agent(Script(), request(tmp_path, quick, state_dir=state))
        assert result.ok
        for _ in range(500):
            if not alive(grandchild):
                break
            await asyncio.sleep(0.01)
        assert not alive(grandchild)
        assert not (state / "running.json").exists()
    finally:
        if alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


class Resuming(Script):
    """A CLI that fails to resume a session with the error its script prints."""

    def argv(self, request: AgentRequest) -> list[str]:
        return [request.session or ""]


async def test_only_a_session_that_is_gone_is_started_afresh(tmp_path: Path) -> None:
    says = ("import json, sys\n"
            "if sys.argv[1]:\n"
            "    print(json.dumps({{'type': 'error', 'text': {error!r}}}), flush=True)\n"
            "    sys.exit(1)\n"
            "print(json.dumps({{'type': 'done'}}), flush=True)\n")

    class ErrorParser(LineParser):
        def read(self, obj: dict[str, Any]) -> list[AgentEvent]:
            if obj.get("type") == "error":
                return [AgentEvent("error", str(obj["text"]))]
            return super().read(obj)

    class Failing(Resuming):
        def parser(self) -> Parser:
            return ErrorParser()

    for error, fresh in (("No conversation found with session ID: s-1", True),
                         ("API Error: 529 overloaded", False)):
        events: list[AgentEvent] = []
        result = await run_resuming(Failing(), request(tmp_path, says.format(error=error),
                                                       session="s-1", timeout_s=30.0),
                                    events.append)
        restarted = [e for e in events if "starting a new session" in e.text]
        assert bool(restarted) is fresh, error
        assert result.ok is fresh  # a new session ran; else the failure, as it was
