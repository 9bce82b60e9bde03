"""The ACP backend against a small ACP agent written with the SDK's agent side
(tests/agents/acp_agent.py), and against one real ACP agent (``gemini --acp``) pointed
at a fake model server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.agents import acp as acp_module
from sisyphus_tui.agents import backend
from sisyphus_tui.agents.base import AgentEvent, AgentRequest, AgentUnavailable, Permissions
from sisyphus_tui.agents.runner import AgentResult, run_agent
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.gemini import Gemini

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
                       f"line over the bound: {raws[3].data.get('dropped_bytes')} "
                       "bytes dropped"]
    assert raws[3].data["dropped_bytes"] > 0
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


# -- one real ACP agent: Gemini CLI (`gemini --acp`) against the fake Gemini API ---------

GEMINI_STEPS = [
    Step(text="Reading the input.", tool="read", args={"path": "input.txt"}),
    Step(text="Writing the output.", tool="write",
         args={"path": "output.txt", "content": "HELLO ACP\n"}),
    Step(text="All done.", input_tokens=200, output_tokens=40),
]


def gemini_request(ws: Path, model: FakeModel, agent_env: dict[str, str], prompt: str,
                   **fields: Any) -> AgentRequest:
    """``gemini --acp`` on the fake server; ``-m`` skips the routing call of "auto", and
    ``general.maxAttempts = 1`` stops it retrying a failed call for over 90 s."""
    home = Path(agent_env["HOME"])
    (home / ".gemini").mkdir(exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps({
        "general": {"maxAttempts": 1, "enableAutoUpdate": False},
        "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}))
    env = {**agent_env, "GEMINI_API_KEY": "fake-key", "GOOGLE_GEMINI_BASE_URL": model.url}
    return AgentRequest(prompt=prompt, workspace=ws, env=env, timeout_s=60, grace_s=1,
                        command=("gemini", "--acp", "-m", "gemini-2.5-flash"), **fields)


async def test_gemini_edits_through_acp(tmp_path: Path, agent_env: dict[str, str]) -> None:
    ws = workspace(tmp_path)
    with FakeModel(Gemini(), GEMINI_STEPS) as model:
        result, events = await run(gemini_request(ws, model, agent_env,
                                                  "uppercase input.txt into output.txt"))
    assert result.ok, (result.error, result.stderr_tail)
    assert (ws / "output.txt").read_text() == "HELLO ACP\n"
    main = [e for e in events if e.kind != "raw"]  # available_commands_update is raw
    assert kinds(main) == ["session", "text", "tool_call", "tool_result", "text", "tool_call",
                           "permission", "tool_result", "text", "usage", "finished"]
    session, reading, read, read_done, writing, write, permission, write_done = main[:8]
    assert session.data["session_id"] == result.session and session.data["agent"] == "gemini-cli"
    assert reading.text == "Reading the input." and writing.text == "Writing the output."
    assert read.data["kind"] == "read" and read.data["input"] == {"path": str(ws / "input.txt")}
    assert read_done.data["id"] == read.data["id"] and not read_done.data["is_error"]
    # Gemini sends a write's tool call only inside its permission request.
    assert write.data["kind"] == "edit" and write.data["id"] == permission.data["id"]
    assert write.data["input"]["path"] == str(ws / "output.txt")
    assert write.data["input"]["content"] == "HELLO ACP\n"
    assert permission.data["decision"] == "allow"
    assert write_done.data["id"] == write.data["id"] and not write_done.data["is_error"]
    usage = main[-2].data
    assert usage["input_tokens"] == 120 + 120 + 200 and usage["output_tokens"] == 30 + 30 + 40
    assert result.text == "All done." and result.stop_reason == "end_turn"
    # the fake model's history: the CLI really sent the read's result back
    assert "hello acp" in json.dumps(model.posts()[1])


async def test_gemini_session_load_fails_and_a_new_session_is_said(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    """Gemini CLI 0.61.0 advertises loadSession, but its session/load starts the chat
    recording for that id before it reads it back, and the new record's
    ``$set messages`` wipes the history: "No previous sessions found for this project".
    The backend then starts a new session and says why (resume itself is covered by
    the SDK test agent above)."""
    ws = workspace(tmp_path)
    with FakeModel(Gemini(), [Step(text="First answer.")]) as model:
        first, _ = await run(gemini_request(ws, model, agent_env, "remember the word PELICAN"))
        assert first.ok, first.error
        second, events = await run(gemini_request(ws, model, agent_env, "which word?",
                                                  session=first.session))
        last = json.dumps(model.posts()[-1])
    assert second.ok, (second.error, second.stderr_tail)
    assert second.session != first.session and events[0].data["resumed"] is False
    assert events[0].text == ("acp: session/load failed: Internal error: No previous "
                              "sessions found for this project. (session "
                              f"{first.session}): a new session started")
    assert "which word?" in last and "PELICAN" not in last


async def test_gemini_cancel_while_the_model_stalls(tmp_path: Path,
                                                    agent_env: dict[str, str]) -> None:
    ws = workspace(tmp_path)
    with FakeModel(Gemini(), stall=True) as model:
        request = gemini_request(ws, model, agent_env, "go")
        task = asyncio.create_task(run_agent(backend("acp"), request))
        while not model.posts():  # noqa: ASYNC110  (the server's thread appends)
            await asyncio.sleep(0.05)
        group = _group_of_listener(model.port)
        begin = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        took = time.perf_counter() - begin
    assert took < 2 * request.grace_s + 1.5
    assert group and not [pid for pid in group if alive(pid)]


def _group_of_listener(port: int) -> list[int]:
    """The pids of the process group that holds a connection to the fake server (the
    agent started by the backend), found through /proc."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port:  # remote port: the client side
            inodes.add(fields[9])
    pgids: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if any(link == f"socket:[{inode}]" for inode in inodes for link in links):
            pgids.add(os.getpgid(int(proc.name)))
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(proc.name)) in pgids:
                    members.append(int(proc.name))
    return members


async def test_gemini_model_500_is_one_line(tmp_path: Path, agent_env: dict[str, str]) -> None:
    ws = workspace(tmp_path)
    with FakeModel(Gemini(), fail_status=500) as model:
        begin = time.perf_counter()
        result, events = await run(gemini_request(ws, model, agent_env, "go"))
    assert time.perf_counter() - begin < 20
    assert result.error == ("acp: session/prompt failed: model API error 500: "
                            "the fake model server fails on purpose")
    assert events[-1].kind == "error" and events[-1].text == result.error


async def test_gemini_unknown_flag_exits_with_one_line(tmp_path: Path,
                                                       agent_env: dict[str, str]) -> None:
    ws = workspace(tmp_path)
    with FakeModel(Gemini()) as model:
        result, _ = await run(gemini_request(ws, model, agent_env, "go",
                                             args=("--bogus-flag",)))
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("acp: the agent exited with 1 during initialize")
    assert result.error.endswith("Unknown arguments: bogus-flag, bogusFlag")


async def test_instructions_and_schema_are_folded_into_the_prompt(tmp_path: Path) -> None:
    """ACP has no system prompt field: both go into the prompt's text."""
    ws = workspace(tmp_path)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    result, _ = await run(AgentRequest(prompt="do it", workspace=ws, instructions="Be brief.",
                                       schema=schema, command=command("edit", tmp_path),
                                       timeout_s=30, grace_s=1))
    assert result.ok and result.session
    sent = json.loads((tmp_path / f"{result.session}.json").read_text())[0]["user"]
    assert sent.startswith("<instructions>\nBe brief.\n</instructions>\n\ndo it\n\n")
    assert sent.endswith(json.dumps(schema))


def edit_request(tmp_path: Path, ws: Path, *options: str, mode: str = "edit",
                 **fields: Any) -> AgentRequest:
    fields.setdefault("timeout_s", 30)
    fields.setdefault("grace_s", 1)
    return AgentRequest(prompt="uppercase input.txt into output.txt", workspace=ws,
                        command=command(mode, tmp_path, *options), **fields)


async def test_a_read_only_request_denies_the_edit(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(edit_request(tmp_path, ws, read_only=True,
                                            permissions=Permissions(allow=("*",))))
    assert result.ok, result.error
    assert not (ws / "output.txt").exists()
    asked = [e for e in events if e.kind == "permission"]
    assert [(e.data["kind"], e.data["decision"]) for e in asked] == [("edit", "deny")]
    assert asked[0].data["reason"] == "read-only: no edits"
    failed = [e for e in events if e.kind == "tool_result" and e.data["is_error"]]
    assert [e.data["id"] for e in failed] == ["edit-1"]


async def test_a_read_only_request_refuses_a_write_it_did_not_ask_for(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(edit_request(tmp_path, ws, "--unasked", read_only=True))
    assert result.ok, result.error
    assert not (ws / "output.txt").exists()
    asked = [(e.data["name"], e.data["decision"]) for e in events if e.kind == "permission"]
    assert asked == [("fs/write_text_file", "deny")]
    failed = [e for e in events if e.kind == "tool_result" and e.data["is_error"]]
    assert "read-only" in failed[0].text
    # Not read-only: the same unasked write inside the workspace goes through.
    ws2 = tmp_path / "ws2"
    ws2.mkdir()
    (ws2 / "input.txt").write_text("hello acp\n")
    result, _ = await run(edit_request(tmp_path, ws2, "--unasked"))
    assert result.ok and (ws2 / "output.txt").read_text() == "HELLO ACP\n"


async def test_an_edit_that_names_no_file_is_denied(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, events = await run(edit_request(tmp_path, ws, "--no-locations"))
    assert result.ok, result.error
    assert not (ws / "output.txt").exists()
    asked = [e for e in events if e.kind == "permission"]
    assert [(e.data["kind"], e.data["decision"]) for e in asked] == [("edit", "deny")]
    assert asked[0].data["reason"] == "an edit that names no file"


async def test_a_deny_by_kind_holds_whatever_the_title(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    # The agent calls its shell "Read input" and the config allows that title: the
    # kind it runs as is denied, and that is final.
    result, events = await run(edit_request(
        tmp_path, ws, "--edit-kind", "execute", "--edit-title", "Read input",
        permissions=Permissions(allow=("Read input", "*"), deny=("execute",))))
    assert result.ok, result.error
    assert not (ws / "output.txt").exists()
    asked = [(e.data["name"], e.data["kind"], e.data["decision"]) for e in events
             if e.kind == "permission"]
    assert asked == [("Read input", "execute", "deny")]
    # The title adds to what is allowed: "Read input" allowed by name, kind unlisted.
    ws2 = tmp_path / "ws2"
    ws2.mkdir()
    (ws2 / "input.txt").write_text("hello acp\n")
    result, events = await run(edit_request(
        tmp_path, ws2, "--edit-kind", "execute", "--edit-title", "Read input",
        permissions=Permissions(allow=("Read input",))))
    assert [e.data["decision"] for e in events if e.kind == "permission"] == ["allow"]
    assert (ws2 / "output.txt").read_text() == "HELLO ACP\n"


@pytest.mark.parametrize("reason", ["max_tokens", "refusal", "max_turn_requests"])
async def test_an_abnormal_stop_reason_is_an_error(tmp_path: Path, reason: str) -> None:
    ws = workspace(tmp_path)
    result, events = await run(edit_request(tmp_path, ws, "--stop", reason))
    assert not result.ok
    assert result.stop_reason == reason
    assert result.error == f"acp stopped: {reason}"
    assert [e.text for e in events if e.kind == "error"] == [result.error]
    assert events[-2].kind == "finished" and events[-2].data["stop_reason"] == reason
