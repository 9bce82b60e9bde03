"""The ACP backend against a small ACP agent written with the SDK's agent side
(tests/agents/acp_agent.py), and against one real ACP agent (``gemini --acp``) pointed
at a fake model server."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from sisyphus_tui.agents import acp as acp_module
from sisyphus_tui.agents import backend
from sisyphus_tui.agents.base import AgentEvent, AgentRequest, AgentUnavailable, Permissions
from sisyphus_tui.agents.runner import AgentResult, run_agent

AGENT = Path(__file__).with_name("acp_agent.py")


def command(mode: str, store: Path, *extra: str) -> tuple[str, ...]:
    return (sys.executable, str(AGENT), "--mode", mode, "--store", str(store), *extra)


def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "input.txt").write_text("hello acp\n")
    return ws


async def run(request: AgentRequest) -> tuple[AgentResult, list[AgentEvent]]:
    events: list[AgentEvent] = []
    result = await run_agent(backend("acp"), request, events.append)
    return result, events


def kinds(events: list[AgentEvent]) -> list[str]:
    return [event.kind for event in events]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes (its parent may not have reaped it yet)
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


async def test_edit_asks_permission_and_writes_inside_the_workspace(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(AgentRequest(prompt="uppercase input.txt into output.txt",
                                            workspace=ws, command=command("edit", tmp_path),
                                            timeout_s=30, grace_s=1))
    assert result.ok, result.error
    assert (ws / "output.txt").read_text() == "HELLO ACP\n"
    assert kinds(events) == ["session", "thinking", "text", "tool_call", "tool_result",
                             "tool_call", "permission", "tool_result", "usage", "text",
                             "usage", "finished"]
    session, thinking, reading, read, read_done, edit, permission, edit_done = events[:8]
    assert session.data["session_id"] == result.session and result.session
    assert session.data["agent"] == "acp-test-agent"
    assert thinking.text == "I should read the input first."
    assert reading.text == "Reading input.txt."  # chunks joined per message
    assert read.data["kind"] == "read" and read.data["input"] == {"path": str(ws / "input.txt")}
    assert read_done.text == "hello acp\n" and not read_done.data["is_error"]
    assert edit.data["kind"] == "edit"
    assert edit.data["input"] == {"path": str(ws / "output.txt"), "content": "HELLO ACP\n"}
    assert permission.data["decision"] == "allow" and permission.data["id"] == "edit-1"
    assert edit_done.data["id"] == "edit-1" and not edit_done.data["is_error"]
    assert "HELLO ACP" in edit_done.text
    assert events[-2].data["input_tokens"] == 120 and events[-2].data["output_tokens"] == 30
    assert events[-2].data["cached_tokens"] == 20
    assert result.usage["context_used"] == 1500 and result.usage["input_tokens"] == 120
    assert result.text == "Done (turn 1)." == events[-1].text
    assert result.stop_reason == "end_turn" == events[-1].data["stop_reason"]


async def test_a_path_outside_the_workspace_is_refused(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(AgentRequest(prompt="write outside", workspace=ws,
                                            command=command("outside", tmp_path),
                                            timeout_s=30, grace_s=1))
    assert not (tmp_path / "outside.txt").exists()
    permissions = [event for event in events if event.kind == "permission"]
    assert [p.data["decision"] for p in permissions] == ["deny"]
    assert "outside the workspace" in permissions[0].data["reason"]
    failed = [event for event in events if event.kind == "tool_result" and event.data["is_error"]]
    assert [event.data["id"] for event in failed] == ["edit-1"]
    assert result.ok  # the agent went on and finished its turn


async def test_the_fs_methods_refuse_a_path_outside_even_when_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The permission step is not the only guard: fs/write_text_file checks too."""
    ws = workspace(tmp_path)
    # "edit" is no longer special but allowed by name: the permission says allow, so
    # the write itself must be refused.
    monkeypatch.setattr(acp_module, "EDIT_KINDS", ())
    result, events = await run(AgentRequest(
        prompt="write outside", workspace=ws, command=command("outside", tmp_path),
        permissions=Permissions(allow=("edit",)), timeout_s=30, grace_s=1))
    assert not (tmp_path / "outside.txt").exists()
    decisions = [(e.data["name"], e.data["decision"]) for e in events if e.kind == "permission"]
    assert decisions == [("Write output", "allow"), ("fs/write_text_file", "deny")]
    failed = [event for event in events if event.kind == "tool_result" and event.data["is_error"]]
    assert "outside the workspace" in failed[0].text
    assert result.ok


async def test_resume_loads_the_session(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    first, _ = await run(AgentRequest(prompt="first prompt", workspace=ws,
                                      command=command("edit", tmp_path), timeout_s=30,
                                      grace_s=1))
    assert first.ok and first.session
    second, events = await run(AgentRequest(prompt="second prompt", workspace=ws,
                                            session=first.session,
                                            command=command("edit", tmp_path),
                                            timeout_s=30, grace_s=1))
    assert second.ok, second.error
    assert second.session == first.session
    assert events[0].kind == "session" and events[0].data["resumed"] is True
    assert events[0].data["replayed"] == 2  # the first turn, not re-reported as text
    assert second.text == "Done (turn 2, earlier: first prompt)."
    assert [e.text for e in events if e.kind == "text"][0] == "Reading input.txt."


async def test_an_unknown_session_starts_a_new_one_and_says_so(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(AgentRequest(prompt="go", workspace=ws, session="sess-gone",
                                            command=command("edit", tmp_path),
                                            timeout_s=30, grace_s=1))
    assert result.ok and result.session != "sess-gone"
    assert events[0].data["resumed"] is False and "sess-gone" in events[0].text


async def test_cancel_sends_session_cancel(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    pids = tmp_path / "pids.txt"
    events: list[AgentEvent] = []
    started = asyncio.Event()

    def seen(event: AgentEvent) -> None:
        events.append(event)
        if event.kind == "text" or pids.exists():
            started.set()

    request = AgentRequest(prompt="hang", workspace=ws, timeout_s=30, grace_s=1,
                           command=command("hang", tmp_path, "--pids", str(pids)))
    task = asyncio.create_task(run_agent(backend("acp"), request, seen))
    # The agent writes its pid once the prompt is in progress.
    while not pids.exists():  # noqa: ASYNC110  (a file another process writes)
        await asyncio.sleep(0.02)
    pid = int(pids.read_text())
    begin = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # session/cancel honoured: well under the grace + SIGINT + SIGKILL path
    assert time.perf_counter() - begin < 1.0
    assert not alive(pid)


async def test_an_agent_deaf_to_cancel_and_sigint_is_killed(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    pids = tmp_path / "pids.txt"
    request = AgentRequest(prompt="hang", workspace=ws, timeout_s=30, grace_s=0.5,
                           command=command("stubborn", tmp_path, "--pids", str(pids)))
    task = asyncio.create_task(run_agent(backend("acp"), request))
    while not pids.exists() or " " not in pids.read_text():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    agent_pid, child_pid = (int(word) for word in pids.read_text().split())
    begin = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    took = time.perf_counter() - begin
    assert 0.9 < took < 3.0  # session/cancel grace, SIGINT grace, then SIGKILL
    assert not alive(agent_pid) and not alive(child_pid)


async def test_a_timeout_cancels_and_says_so(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    request = AgentRequest(prompt="hang", workspace=ws, timeout_s=1.0, grace_s=0.5,
                           command=command("hang", tmp_path, "--pids",
                                           str(tmp_path / "p.txt")))
    result, events = await run(request)
    assert result.timed_out and result.error == "acp timed out after 1s"
    assert events[-1].kind == "error" and events[-1].text == result.error


async def test_garbage_and_huge_lines_become_raw_events(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(AgentRequest(prompt="go", workspace=ws, timeout_s=30,
                                            grace_s=1, command=command("garbage", tmp_path)))
    assert result.ok, result.error
    assert (ws / "output.txt").read_text() == "HELLO ACP\n"
    raws = [event for event in events if event.kind == "raw"]
    reasons = [event.data["reason"] for event in raws[:4]]
    assert reasons == ["not JSON", "not a JSON-RPC message",
                       "unknown session update 'brand_new_thing'",
                       "truncated: over the line bound"]
    assert raws[0].text == "Loading agent... not JSON at all"
    assert len(raws[3].raw or "") <= 65536 and len(raws[3].text) <= 16384


async def test_an_agent_that_exits_at_start(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(AgentRequest(prompt="go", workspace=ws, timeout_s=30,
                                            grace_s=1, command=command("exit", tmp_path)))
    assert not result.ok and result.exit_code == 3
    assert result.error == ("acp: the agent exited with 3 during initialize: "
                            "acp-test-agent: cannot start: bad configuration")
    assert "\n" not in result.error
    assert kinds(events) == ["error"]


async def test_json_rpc_errors_are_one_line(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, _ = await run(AgentRequest(prompt="go", workspace=ws, timeout_s=30, grace_s=1,
                                       command=command("error", tmp_path)))
    assert result.error == "acp: session/prompt failed: model failed: HTTP 500 from model"
    auth, _ = await run(AgentRequest(prompt="go", workspace=ws, timeout_s=30, grace_s=1,
                                     command=command("auth", tmp_path)))
    assert auth.error == "acp: session/new failed: authentication required: log in first"


async def test_a_missing_command(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    with pytest.raises(AgentUnavailable, match="no agent command given"):
        await run_agent(backend("acp"), AgentRequest(prompt="go", workspace=ws))
    with pytest.raises(AgentUnavailable) as missing:
        await run_agent(backend("acp"), AgentRequest(prompt="go", workspace=ws,
                                                     command=("no-such-acp-agent", "acp")))
    assert "'no-such-acp-agent' is not installed" in str(missing.value)
    assert "\n" not in str(missing.value)
