"""The Claude Code backend, against the real ``claude`` binary (pinned) and a fake
Anthropic Messages API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.agents import AgentUnavailable, backend
from sisyphus_tui.agents.base import AgentEvent, AgentRequest, Permissions
from sisyphus_tui.agents.claude import ClaudeBackend
from sisyphus_tui.agents.runner import AgentResult, run_agent
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.anthropic import Anthropic
from tests.agents.processes import alive, group_pids

EDIT_STEPS = [
    Step(text="Let me read it.", tool="read", args={"path": "notes.txt"},
         thinking="The notes first."),
    Step(tool="edit", args={"path": "notes.txt", "old": "draft", "new": "final"}),
    Step(tool="write", args={"path": "out.txt", "content": "written by claude\n"}),
    Step(text="Edited notes.txt and wrote out.txt.", cached_tokens=11),
]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The agent's folder, with the file the edit run changes."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("status: draft\n")
    return ws


def request_for(server: FakeModel, workspace: Path, base_env: dict[str, str],
                **fields: Any) -> AgentRequest:
    """A request to the fake model, small timeouts and grace (``env``: over it)."""
    full_env = {**base_env, "ANTHROPIC_BASE_URL": server.url,
                "ANTHROPIC_API_KEY": "sk-fake", **fields.pop("env", {})}
    fields.setdefault("timeout_s", 60.0)
    fields.setdefault("grace_s", 1.0)
    return AgentRequest(workspace=workspace, env=full_env,
                        prompt=fields.pop("prompt", "Finalise the notes."), **fields)


async def run(request: AgentRequest) -> tuple[AgentResult, list[AgentEvent]]:
    """The run's result and every event it emitted."""
    events: list[AgentEvent] = []
    result = await run_agent(ClaudeBackend(), request, events.append)
    return result, events


def kinds(events: list[AgentEvent]) -> list[str]:
    """The normalised kinds, in order (raw lines left out: their number may vary)."""
    return [event.kind for event in events if event.kind != "raw"]


def test_registry_names_the_backend() -> None:
    assert isinstance(backend("claude"), ClaudeBackend)


async def test_edit_run(workspace: Path, agent_env: dict[str, str]) -> None:
    with FakeModel(Anthropic(), EDIT_STEPS) as model:
        result, events = await run(request_for(model, workspace, agent_env,
                                               instructions="Be brief, sisyphus."))
    assert result.ok, (result.error, result.stderr_tail)
    assert (workspace / "notes.txt").read_text() == "status: final\n"
    assert (workspace / "out.txt").read_text() == "written by claude\n"
    assert result.text == "Edited notes.txt and wrote out.txt."
    assert result.stop_reason == "end_turn"
    session = events[0]
    assert session.kind == "session" and session.data["session_id"] == result.session
    assert session.data["cwd"] == str(workspace)
    assert kinds(events) == ["session", "thinking", "text", "tool_call", "tool_result",
                             "tool_call", "tool_result", "tool_call", "tool_result",
                             "text", "usage", "finished"]
    calls = [e for e in events if e.kind == "tool_call"]
    assert [c.data["name"] for c in calls] == ["Read", "Edit", "Write"]
    assert calls[0].data["input"] == {"file_path": str(workspace / "notes.txt")}
    assert calls[2].data["input"] == {"file_path": str(workspace / "out.txt"),
                                      "content": "written by claude\n"}
    results = [e for e in events if e.kind == "tool_result"]
    assert [r.data["id"] for r in results] == [c.data["id"] for c in calls]
    assert "status: draft" in results[0].text and not results[0].data["is_error"]
    assert [e.text for e in events if e.kind == "thinking"] == ["The notes first."]
    # Usage summed over the four model calls (the fake's 120 in / 30 out each).
    assert result.usage["input_tokens"] == 480
    assert result.usage["output_tokens"] == 120
    assert result.usage["cached_tokens"] == 11
    assert result.usage["cost_usd"] > 0
    # The first event of each line keeps the line itself.
    assert all(e.raw for e in events if e.kind == "session")
    # The instructions were appended to Claude Code's system prompt; thinking "off"
    # (the request's default) reached the model as thinking disabled.
    system = json.dumps(model.posts()[0]["system"])
    assert "Be brief, sisyphus." in system
    assert model.posts()[0]["thinking"] == {"type": "disabled"}


async def test_resume_continues_the_session(workspace: Path,
                                            agent_env: dict[str, str]) -> None:
    with FakeModel(Anthropic(), [Step(text="First answer: 17.")]) as model:
        first, _ = await run(request_for(model, workspace, agent_env,
                                         prompt="Remember the number 17."))
        assert first.ok and first.session, first.error
        posts_before = len(model.posts())
        second, events = await run(request_for(model, workspace, agent_env,
                                               prompt="Which number was it?",
                                               session=first.session))
    assert second.ok, second.error
    assert second.session == first.session
    assert events[0].kind == "session" and events[0].data["session_id"] == first.session
    history = json.dumps(model.posts()[posts_before]["messages"])
    assert "Remember the number 17." in history
    assert "First answer: 17." in history
    assert "Which number was it?" in history
    # One assistant turn in its history: the fake answered its second step (DONE).
    assert second.text == "Done."


async def test_resume_of_an_unknown_session(workspace: Path,
                                            agent_env: dict[str, str]) -> None:
    gone = "6b10d227-1c5c-401a-b836-e515e1fde8ba"
    with FakeModel(Anthropic()) as model:
        result, _ = await run(request_for(model, workspace, agent_env, session=gone))
    assert not result.ok
    assert result.error == f"claude: No conversation found with session ID: {gone}"
    assert not model.posts()






async def cancel_while_stalled(request: AgentRequest, model: FakeModel,
                               workspace: Path) -> tuple[float, set[int]]:
    """Start the run, cancel it once the model call is in flight; how long the cancel
    took and the pids that ran."""
    task = asyncio.create_task(run_agent(ClaudeBackend(), request))
    deadline = time.monotonic() + 30
    while not any(body.get("tools") for body in model.posts()):
        assert time.monotonic() < deadline, "the CLI never called the model"
        assert not task.done(), task
        await asyncio.sleep(0.05)
    pids = group_pids(workspace)
    assert pids
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - start, pids


async def test_cancel_uses_the_protocols_interrupt(workspace: Path,
                                                   agent_env: dict[str, str]) -> None:
    with FakeModel(Anthropic(), stall=True) as model:
        took, pids = await cancel_while_stalled(
            request_for(model, workspace, agent_env, grace_s=5.0), model, workspace)
    # The interrupt ended it: well before the 5 s grace would let SIGINT go.
    assert took < 4.0
    assert not [pid for pid in pids if alive(pid)]


async def test_cancel_of_an_agent_that_ignores_sigint(workspace: Path, tmp_path: Path,
                                                      agent_env: dict[str, str],
                                                      cli_bin: Path) -> None:
    # Claude Code installs its own SIGINT handler (an inherited SIG_IGN does not hold),
    # so the wrapper is what ignores it: it stays on after claude has stopped.
    wrapper = tmp_path / "stubborn-claude"
    wrapper.write_text(f"#!/bin/sh\ntrap '' INT\n{cli_bin / 'claude'} \"$@\"\n"
                       "exec sleep 60\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    with FakeModel(Anthropic(), stall=True) as model:
        request = request_for(model, workspace, agent_env, command=(str(wrapper),),
                              grace_s=1.0)
        took, pids = await cancel_while_stalled(request, model, workspace)
    # Interrupt (claude ends, the wrapper does not), 1 s; SIGINT ignored, 1 s; SIGKILL.
    assert 2.0 <= took < 6.0
    assert not [pid for pid in pids if alive(pid)]


async def test_huge_malformed_and_unknown_lines(workspace: Path, tmp_path: Path,
                                                agent_env: dict[str, str],
                                                cli_bin: Path) -> None:
    wrapper = tmp_path / "noisy-claude"
    wrapper.write_text("#!/bin/sh\n"
                       "echo 'this is not JSON'\n"
                       "echo '{\"type\": \"from_the_future\", \"x\": 1}'\n"
                       f"exec {cli_bin / 'claude'} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    huge = "x" * (2 << 20)  # 2 MB: the assistant line is over the runner's 1 MB bound
    steps = [Step(text=huge, tool="read", args={"path": "notes.txt"}),
             Step(text="Survived.")]
    with FakeModel(Anthropic(), steps) as model:
        result, events = await run(request_for(model, workspace, agent_env,
                                               command=(str(wrapper),)))
    assert result.ok, (result.error, result.stderr_tail)
    assert result.text == "Survived."
    raws = [e for e in events if e.kind == "raw"]
    reasons = [e.data["reason"] for e in raws]
    assert "not JSON" in reasons
    assert "unknown type 'from_the_future'" in reasons
    cut = [e for e in raws if e.data["reason"].startswith("line over the bound")]
    assert len(cut) == 1 and len(cut[0].text) < 20000
    assert [e.data["name"] for e in events if e.kind == "tool_call"] == ["Read"]


async def test_bad_flag_is_one_error_line(workspace: Path,
                                          agent_env: dict[str, str]) -> None:
    seen: list[AgentEvent] = []
    with FakeModel(Anthropic()) as model:
        result = await run_agent(ClaudeBackend(), request_for(
            model, workspace, agent_env, args=("--no-such-flag",)), seen.append)
    assert not result.ok and result.exit_code != 0
    assert result.error is not None and "\n" not in result.error
    assert "--no-such-flag" in result.error
    assert [e.text for e in seen if e.kind == "error"] == [result.error]


async def test_http_500_fails_in_bounded_time(workspace: Path,
                                              agent_env: dict[str, str]) -> None:
    # No CLAUDE_CODE_MAX_RETRIES in the env: the backend's own small default applies.
    env = {k: v for k, v in agent_env.items() if k != "CLAUDE_CODE_MAX_RETRIES"}
    assert "CLAUDE_CODE_MAX_RETRIES" not in os.environ
    start = time.monotonic()
    with FakeModel(Anthropic(), fail_status=500) as model:
        result, events = await run(request_for(model, workspace, env))
    took = time.monotonic() - start
    assert took < 20
    assert len(model.posts()) == 3  # the first call and the backend's two retries
    assert not result.ok
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("claude: API Error: 500")
    assert [e.text for e in events if e.kind == "error"] == [result.error]


async def test_auth_error_and_refused_connection(workspace: Path,
                                                 agent_env: dict[str, str]) -> None:
    with FakeModel(Anthropic(), fail_status=401) as model:
        denied, _ = await run(request_for(model, workspace, agent_env))
        port = model.port
    assert denied.error is not None and "401" in denied.error
    assert "authenticate" in denied.error.lower()
    # The server is gone: the same port now refuses.
    request = request_for(model, workspace, agent_env,
                          env={"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"})
    refused, _ = await run(request)
    assert refused.error is not None and "\n" not in refused.error
    assert "ConnectionRefused" in refused.error or "connect" in refused.error.lower()


async def test_missing_api_key(workspace: Path, agent_env: dict[str, str]) -> None:
    with FakeModel(Anthropic()) as model:
        request = request_for(model, workspace, agent_env)
        env = {k: v for k, v in request.env.items() if k != "ANTHROPIC_API_KEY"}
        assert "ANTHROPIC_API_KEY" not in os.environ
        result, _ = await run(AgentRequest(prompt="hi", workspace=workspace, env=env,
                                           timeout_s=30, grace_s=1.0))
    assert result.error is not None and "\n" not in result.error
    assert "log" in result.error.lower()  # "Not logged in · Please run /login"
    assert not model.posts()


async def test_missing_binary(workspace: Path, agent_env: dict[str, str]) -> None:
    request = AgentRequest(prompt="hi", workspace=workspace, env=agent_env,
                           command=("no-such-claude",))
    with pytest.raises(AgentUnavailable) as raised:
        await run_agent(ClaudeBackend(), request)
    assert "no-such-claude" in str(raised.value) and "\n" not in str(raised.value)
    bare = AgentRequest(prompt="hi", workspace=workspace,
                        env={**agent_env, "PATH": "/nonexistent"})
    with pytest.raises(AgentUnavailable, match="@anthropic-ai/claude-code"):
        await run_agent(ClaudeBackend(), bare)


async def test_permission_prompt_allow_and_deny(workspace: Path,
                                                agent_env: dict[str, str]) -> None:
    # python3 writing a file is no edit the CLI accepts by itself: it asks us.
    write_a = "python3 -c \"open('a.txt','w').write('a')\""
    write_b = "python3 -c \"open('b.txt','w').write('b')\""
    steps = [Step(tool="shell", args={"command": write_a}),
             Step(tool="shell", args={"command": write_b}),
             Step(text="Tried both.")]
    with FakeModel(Anthropic(), steps) as model:
        request = request_for(model, workspace, agent_env,
                              permissions=Permissions(allow=("Bash",)))
        allowed, events = await run(request)
    assert allowed.ok, allowed.error
    # "Bash" reaches Claude as its own --allowedTools rule: it no longer asks.
    assert not [e for e in events if e.kind == "permission"]
    assert (workspace / "a.txt").read_text() == "a"
    assert (workspace / "b.txt").read_text() == "b"
    (workspace / "a.txt").unlink()
    (workspace / "b.txt").unlink()
    with FakeModel(Anthropic(), steps) as model:
        denied, events = await run(request_for(model, workspace, agent_env))
    assert denied.ok, denied.error
    asked = [e for e in events if e.kind == "permission"]
    assert [e.data["decision"] for e in asked] == ["deny", "deny"]
    results = [e for e in events if e.kind == "tool_result"]
    assert all(r.data["is_error"] for r in results)
    assert not (workspace / "a.txt").exists() and not (workspace / "b.txt").exists()


async def test_schema_answer_is_the_json(workspace: Path,
                                         agent_env: dict[str, str]) -> None:
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}},
              "required": ["verdict"]}
    steps = [Step(tool="StructuredOutput", args={"verdict": "ship it"})]
    with FakeModel(Anthropic(), steps) as model:
        result, _ = await run(request_for(model, workspace, agent_env, schema=schema,
                                          model="claude-opus-4-8",
                                          thinking="ultrathink"))
    assert result.ok, result.error
    assert json.loads(result.text) == {"verdict": "ship it"}
    first = model.posts()[0]
    assert first["model"] == "claude-opus-4-8"
    assert first["thinking"] != {"type": "disabled"}
    assert first["output_config"]["effort"] == "max"
    offered = [tool["name"] for tool in first["tools"]]
    assert "StructuredOutput" in offered


def test_interrupt_line_and_quiet_environment(workspace: Path) -> None:
    claude = ClaudeBackend()
    line = json.loads(claude.interrupt() or b"")
    assert line["type"] == "control_request"
    assert line["request"] == {"subtype": "interrupt"}
    env = claude.environment(AgentRequest(prompt="p", workspace=workspace))
    assert env["DISABLE_TELEMETRY"] == "1" and env["DISABLE_AUTOUPDATER"] == "1"
    mine = claude.environment(AgentRequest(prompt="p", workspace=workspace,
                                           env={"CLAUDE_CODE_MAX_RETRIES": "9"}))
    assert "CLAUDE_CODE_MAX_RETRIES" not in mine


async def test_write_outside_the_workspace_asks_and_is_denied(
        workspace: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    outside = tmp_path / "outside.txt"
    steps = [Step(tool="write", args={"path": str(outside), "content": "escaped"}),
             Step(text="Could not.")]
    with FakeModel(Anthropic(), steps) as model:
        result, events = await run(request_for(model, workspace, agent_env))
    assert result.ok, result.error
    asked = [e for e in events if e.kind == "permission"]
    assert [(e.data["name"], e.data["decision"]) for e in asked] == [("Write", "deny")]
    assert asked[0].data["input"]["file_path"] == str(outside)
    assert not outside.exists()
    finished = [e for e in events if e.kind == "finished"]
    assert [d["tool_name"] for d in finished[0].data["permission_denials"]] == ["Write"]


async def test_read_only_request_cannot_edit(workspace: Path,
                                             agent_env: dict[str, str]) -> None:
    steps = [Step(tool="read", args={"path": "notes.txt"}),
             Step(tool="write", args={"path": "out.txt", "content": "planned\n"}),
             Step(tool="edit", args={"path": "notes.txt", "old": "draft", "new": "final"}),
             Step(text="Could not write.")]
    with FakeModel(Anthropic(), steps) as model:
        # Even with every tool allowed by the config: read-only refuses the edits.
        result, events = await run(request_for(model, workspace, agent_env, read_only=True,
                                               permissions=Permissions(allow=("*",))))
    assert result.ok, (result.error, result.stderr_tail)
    assert result.text == "Could not write."
    assert not (workspace / "out.txt").exists()
    assert (workspace / "notes.txt").read_text() == "status: draft\n"
    assert events[0].data["permission_mode"] == "default"
    asked = [e for e in events if e.kind == "permission"]
    assert [(e.data["name"], e.data["decision"]) for e in asked] == [("Write", "deny"),
                                                                     ("Edit", "deny")]
    results = [e for e in events if e.kind == "tool_result"]
    assert not results[0].data["is_error"]  # the read
    assert all(r.data["is_error"] for r in results[1:]) and len(results) == 3
    assert "read-only" in results[1].text


async def test_read_only_schema_answer(workspace: Path, agent_env: dict[str, str]) -> None:
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}},
              "required": ["verdict"]}
    steps = [Step(tool="StructuredOutput", args={"verdict": "looks fine"})]
    with FakeModel(Anthropic(), steps) as model:
        result, events = await run(request_for(model, workspace, agent_env, schema=schema,
                                               read_only=True))
    assert result.ok, result.error
    assert json.loads(result.text) == {"verdict": "looks fine"}
    assert not [e for e in events if e.kind == "permission"]


def test_permission_patterns_match_the_command() -> None:
    rules = Permissions(allow=("Bash(echo*)", "Bash(git diff:*)", "Read"),
                        deny=("Bash(echo *secret*)",))
    # What no rule allows asks a person (denied when nobody can be asked); a deny
    # rule denies outright.
    assert rules.decide("Bash", {"command": "echo hi"}) == "allow"
    assert rules.decide("Bash", {"command": "rm x"}) == "ask"
    assert rules.decide("Bash", {"command": "echo my secret"}) == "deny"
    assert rules.decide("Bash", {"command": "git diff HEAD"}) == "allow"
    assert rules.decide("Bash", {"command": "git diffuse"}) == "ask"
    assert rules.decide("Bash") == "ask"  # a pattern needs the command
    assert rules.decide("Read", {"file_path": "/x"}) == "allow"
    assert rules.decide("Bash", {"command": "echo hi; rm x"}) == "ask"
    assert rules.decide("Bash", {"command": "echo $(rm x)"}) == "ask"


async def test_a_bash_pattern_allows_only_its_commands(workspace: Path,
                                                       agent_env: dict[str, str]) -> None:
    # python3 writing a file is no edit acceptEdits lets through (rm, mv, touch inside
    # the workspace are: Claude counts them as edits): it asks, and no pattern allows it.
    write = "python3 -c \"open('x.txt','w').write('x')\""
    steps = [Step(tool="shell", args={"command": "echo hi"}),
             Step(tool="shell", args={"command": write}),
             Step(tool="shell", args={"command": f"echo hi; {write}"}),
             Step(text="Echoed; could not write.")]
    with FakeModel(Anthropic(), steps) as model:
        result, events = await run(request_for(
            model, workspace, agent_env, permissions=Permissions(allow=("Bash(echo*)",))))
    assert result.ok, result.error
    assert not (workspace / "x.txt").exists()
    results = [e for e in events if e.kind == "tool_result"]
    assert results[0].text.strip() == "hi" and not results[0].data["is_error"]
    assert results[1].data["is_error"] and results[2].data["is_error"]
    asked = [(e.data["input"]["command"], e.data["decision"]) for e in events
             if e.kind == "permission"]
    assert (write, "deny") in asked and (f"echo hi; {write}", "deny") in asked
    assert ("echo hi", "deny") not in asked


class StopsAt(Anthropic):
    """The Messages API whose last message stops for ``reason`` (not ``end_turn``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _stream(self, reply: Any, body: dict[str, Any], step: Step) -> None:
        reason = self.reason

        class Rewriting:
            def event(self, data: Any, name: str | None = None) -> None:
                if isinstance(data, dict) and data.get("type") == "message_delta" and \
                        data["delta"].get("stop_reason") == "end_turn":
                    data = {**data, "delta": {**data["delta"], "stop_reason": reason}}
                reply.event(data, name)

        super()._stream(Rewriting(), body, step)  # type: ignore[arg-type]


@pytest.mark.parametrize("reason", ["max_tokens", "refusal", "pause_turn"])
async def test_an_abnormal_stop_is_an_error(workspace: Path, agent_env: dict[str, str],
                                            reason: str) -> None:
    with FakeModel(StopsAt(reason), [Step(text="Half an ans")]) as model:
        result, events = await run(request_for(model, workspace, agent_env))
    errors = [e.text for e in events if e.kind == "error"]
    assert not result.ok
    assert errors == [result.error]
    if reason == "pause_turn":
        # Claude Code itself says nothing of it (is_error false): the parser does.
        assert result.error == "claude stopped: pause_turn"
        assert result.stop_reason == "pause_turn"


async def test_the_configs_permission_mode_wins(workspace: Path,
                                                agent_env: dict[str, str]) -> None:
    with FakeModel(Anthropic(), [Step(text="planned")]) as model:
        default, events = await run(request_for(model, workspace, agent_env))
        assert events[0].data["permission_mode"] == "acceptEdits"
        chosen, events = await run(request_for(
            model, workspace, agent_env, args=("--permission-mode", "plan")))
    assert default.ok and chosen.ok
    # The config's args come after the backend's own flags: the user's mode is the one.
    assert events[0].kind == "session" and events[0].data["permission_mode"] == "plan"
