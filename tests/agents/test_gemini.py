"""The Gemini CLI backend, against the real ``gemini`` binary (pinned) and a fake Gemini
API (``:streamGenerateContent?alt=sse``) on 127.0.0.1."""

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
from sisyphus_tui.agents.gemini import GeminiBackend, GeminiParser, policy_toml
from sisyphus_tui.agents.runner import AgentResult, run_agent
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.gemini import Gemini
from tests.agents.processes import alive, group_pids

MODEL = "gemini-2.5-flash"  # named: no routing call before each turn
EDIT_STEPS = [
    Step(text="Let me read it.", tool="read", args={"path": "notes.txt"}),
    Step(tool="edit", args={"path": "notes.txt", "old": "draft", "new": "final"}),
    Step(tool="write", args={"path": "out.txt", "content": "written by gemini\n"}),
    Step(text="Edited notes.txt and wrote out.txt.", cached_tokens=11),
]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The agent's folder, with the file the edit run changes."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("status: draft\n")
    return ws


@pytest.fixture
def gemini_env(agent_env: dict[str, str]) -> dict[str, str]:
    """The test's home with the user's own Gemini settings: quiet (usage statistics,
    telemetry and auto-update are settings only), the API key as the auth method (with
    a base URL the CLI would guess a "gateway" auth and refuse it), and one attempt per
    model call (the CLI waits 5 s, then longer, between up to 10)."""
    settings = Path(agent_env["HOME"]) / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({
        "general": {"maxAttempts": 1, "enableAutoUpdate": False,
                    "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }))
    return agent_env


def request_for(server: FakeModel, workspace: Path, base_env: dict[str, str],
                **fields: Any) -> AgentRequest:
    """A request to the fake model, small timeouts and grace (``env``: over it)."""
    full_env = {**base_env, "GOOGLE_GEMINI_BASE_URL": server.url,
                "GEMINI_API_KEY": "fake-key", **fields.pop("env", {})}
    fields.setdefault("timeout_s", 60.0)
    fields.setdefault("grace_s", 1.0)
    fields.setdefault("model", MODEL)
    fields.setdefault("state_dir", workspace.parent / "state")
    return AgentRequest(workspace=workspace, env=full_env,
                        prompt=fields.pop("prompt", "Finalise the notes."), **fields)


async def run(request: AgentRequest) -> tuple[AgentResult, list[AgentEvent]]:
    """The run's result and every event it emitted."""
    events: list[AgentEvent] = []
    result = await run_agent(GeminiBackend(), request, events.append)
    return result, events


def kinds(events: list[AgentEvent]) -> list[str]:
    """The normalised kinds, in order (raw lines left out: their number may vary)."""
    return [event.kind for event in events if event.kind != "raw"]


def user_text(body: dict[str, Any]) -> str:
    """Every text the request's contents hold, as one string."""
    return json.dumps(body.get("contents") or [])


def test_registry_names_the_backend() -> None:
    assert isinstance(backend("gemini"), GeminiBackend)


async def test_edit_run(workspace: Path, gemini_env: dict[str, str]) -> None:
    with FakeModel(Gemini(), EDIT_STEPS) as model:
        result, events = await run(request_for(model, workspace, gemini_env,
                                               instructions="Be brief, sisyphus."))
    assert result.ok, (result.error, result.stderr_tail)
    assert (workspace / "notes.txt").read_text() == "status: final\n"
    assert (workspace / "out.txt").read_text() == "written by gemini\n"
    assert result.text == "Edited notes.txt and wrote out.txt."
    assert result.stop_reason == "end_turn"
    session = events[0]
    assert session.kind == "session" and session.data["session_id"] == result.session
    assert session.data["model"] == MODEL
    assert kinds(events) == ["session", "text", "tool_call", "tool_result", "tool_call",
                             "tool_result", "tool_call", "tool_result", "text", "usage",
                             "finished"]
    texts = [e.text for e in events if e.kind == "text"]
    assert texts == ["Let me read it.", "Edited notes.txt and wrote out.txt."]  # joined
    calls = [e.data for e in events if e.kind == "tool_call"]
    notes, out = str(workspace / "notes.txt"), str(workspace / "out.txt")
    assert [(c["name"], c["input"].get("file_path")) for c in calls] == [
        ("read_file", notes), ("replace", notes), ("write_file", out)]
    assert calls[1]["input"]["old_string"] == "draft"
    assert calls[2]["input"]["content"] == "written by gemini\n"
    results = [e for e in events if e.kind == "tool_result"]
    assert [r.data["id"] for r in results] == [c["id"] for c in calls]
    assert not any(r.data["is_error"] for r in results)
    # The read really happened: the file's text went back to the model.
    assert "status: draft" in user_text(model.posts()[1])
    usage = next(e for e in events if e.kind == "usage").data
    assert usage["input_tokens"] == sum(s.input_tokens for s in EDIT_STEPS)
    assert usage["output_tokens"] == sum(s.output_tokens for s in EDIT_STEPS)
    assert usage["cached_tokens"] == 11
    assert usage["tool_calls"] == 3
    assert result.usage == usage
    # The instructions reached the model, marked, ahead of the prompt.
    assert "<instructions>\\nBe brief, sisyphus.\\n</instructions>\\n\\nFinalise the notes." \
        in user_text(model.posts()[0])
    assert len(model.posts()) == len(EDIT_STEPS)


async def test_resume_continues_the_session(workspace: Path,
                                            gemini_env: dict[str, str]) -> None:
    # model "auto" (none named): each turn starts with the CLI's routing call.
    with FakeModel(Gemini(), [Step(text="First answer: 17.")]) as model:
        first, _ = await run(request_for(model, workspace, gemini_env, model=None,
                                         prompt="Remember the number 17."))
        assert first.ok and first.session, (first.error, first.stderr_tail)
        posts_before = len(model.posts())
        second, events = await run(request_for(model, workspace, gemini_env, model=None,
                                               prompt="Which number was it?",
                                               session=first.session))
    assert second.ok, (second.error, second.stderr_tail)
    assert second.session == first.session
    assert events[0].kind == "session" and events[0].data["session_id"] == first.session
    turn = [body for body in model.posts()[posts_before:] if body.get("tools")]
    history = user_text(turn[0])
    assert "Remember the number 17." in history
    assert "First answer: 17." in history
    assert "Which number was it?" in history
    # One model turn in its history: the fake answered its second step (DONE).
    assert second.text == "Done."
    routing = [path for method, path, body in model.requests[posts_before:]
               if method == "POST" and ":generateContent" in path]
    assert len(routing) == 1
    # The turn's usage counts every call of it, the routing call (10 + 1) included.
    usage = next(e for e in events if e.kind == "usage").data
    assert (usage["input_tokens"], usage["output_tokens"]) == (120 + 10, 30 + 1)


async def test_resume_of_an_unknown_session(workspace: Path,
                                            gemini_env: dict[str, str]) -> None:
    gone = "6b10d227-1c5c-401a-b836-e515e1fde8ba"
    with FakeModel(Gemini()) as model:
        result, events = await run(request_for(model, workspace, gemini_env,
                                               session=gone))
    assert not result.ok and result.exit_code == 42
    assert result.error == ("gemini exited with 42: Error resuming session: No previous "
                            "sessions found for this project.")
    assert [e.text for e in events if e.kind == "error"] == [result.error]
    assert not model.posts()






async def cancel_while_stalled(request: AgentRequest, model: FakeModel,
                               workspace: Path) -> tuple[float, set[int]]:
    """Start the run, cancel it once the model call is in flight; how long the cancel
    took and the pids that ran."""
    task = asyncio.create_task(run_agent(GeminiBackend(), request))
    deadline = time.monotonic() + 30
    while not model.posts():
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


async def test_cancel_while_the_model_stalls(workspace: Path,
                                             gemini_env: dict[str, str]) -> None:
    with FakeModel(Gemini(), stall=True) as model:
        took, pids = await cancel_while_stalled(
            request_for(model, workspace, gemini_env, grace_s=5.0), model, workspace)
    # Not relaunched as a child, gemini ends on the SIGINT: well before the 5 s grace.
    assert took < 4.0
    assert not [pid for pid in pids if alive(pid)]


async def test_cancel_of_an_agent_that_ignores_sigint(workspace: Path, tmp_path: Path,
                                                      gemini_env: dict[str, str],
                                                      cli_bin: Path) -> None:
    # node resets an inherited SIG_IGN, so the wrapper is what ignores SIGINT: it stays
    # on after gemini has stopped.
    wrapper = tmp_path / "stubborn-gemini"
    wrapper.write_text(f"#!/bin/sh\ntrap '' INT\n{cli_bin / 'gemini'} \"$@\"\n"
                       "exec sleep 60\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    with FakeModel(Gemini(), stall=True) as model:
        request = request_for(model, workspace, gemini_env, command=(str(wrapper),),
                              grace_s=1.0)
        took, pids = await cancel_while_stalled(request, model, workspace)
    # SIGINT (gemini ends, the wrapper does not), 1 s grace; SIGKILL.
    assert 1.0 <= took < 4.0
    assert len(pids) >= 2
    assert not [pid for pid in pids if alive(pid)]


async def test_huge_malformed_and_unknown_lines(workspace: Path, tmp_path: Path,
                                                gemini_env: dict[str, str],
                                                cli_bin: Path) -> None:
    # The wrapper prints them before the real CLI starts: a line that is not JSON, an
    # event type from a newer CLI, and a 2 MB assistant chunk, over the runner's 1 MB
    # bound. (Not the real CLI's own 2 MB message: gemini 0.61 loses the rest of its
    # stdout after writing megabytes to a pipe, and exits 0 without its result line.)
    wrapper = tmp_path / "noisy-gemini"
    wrapper.write_text("#!/bin/sh\n"
                       "echo 'this is not JSON'\n"
                       "echo '{\"type\": \"from_the_future\", \"x\": 1}'\n"
                       "printf '{\"type\":\"message\",\"role\":\"assistant\",\"content\":\"'\n"
                       "head -c 2097152 /dev/zero | tr '\\0' x\n"
                       "printf '\",\"delta\":true}\\n'\n"
                       f"exec {cli_bin / 'gemini'} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    steps = [Step(text="Reading.", tool="read", args={"path": "notes.txt"}),
             Step(text="Survived.")]
    with FakeModel(Gemini(), steps) as model:
        result, events = await run(request_for(model, workspace, gemini_env,
                                               command=(str(wrapper),)))
    assert result.ok, (result.error, result.stderr_tail)
    assert result.text == "Survived."
    raws = [e for e in events if e.kind == "raw"]
    reasons = [e.data["reason"] for e in raws]
    assert reasons[:2] == ["not JSON", "unknown type 'from_the_future'"]
    cut = [e for e in raws if e.data["reason"].startswith("line over the bound")]
    assert len(cut) == 1 and len(cut[0].text) < 20000
    assert [e.data["name"] for e in events if e.kind == "tool_call"] == ["read_file"]
    assert [e.text for e in events if e.kind == "text"] == ["Reading.", "Survived."]


async def test_bad_flag_is_one_error_line(workspace: Path,
                                          gemini_env: dict[str, str]) -> None:
    with FakeModel(Gemini()) as model:
        result, events = await run(request_for(model, workspace, gemini_env,
                                               args=("--bogus-flag",)))
    assert not result.ok and result.exit_code != 0
    # yargs says so first, then prints its whole usage.
    assert result.error == "gemini exited with 1: Unknown arguments: bogus-flag, bogusFlag"
    assert [e.text for e in events if e.kind == "error"] == [result.error]
    assert not model.posts()


async def test_http_500_fails_in_bounded_time(workspace: Path,
                                              gemini_env: dict[str, str]) -> None:
    start = time.monotonic()
    with FakeModel(Gemini(), fail_status=500) as model:
        result, events = await run(request_for(model, workspace, gemini_env))
    assert time.monotonic() - start < 20
    assert len(model.posts()) == 1  # the settings' maxAttempts
    assert not result.ok and result.exit_code != 0
    assert result.error == ("gemini: API error 500 (INTERNAL): the fake model server "
                            "fails on purpose")
    assert [e.text for e in events if e.kind == "error"] == [result.error]


async def test_auth_error_and_refused_connection(workspace: Path,
                                                 gemini_env: dict[str, str]) -> None:
    with FakeModel(Gemini(), fail_status=401) as model:
        denied, _ = await run(request_for(model, workspace, gemini_env))
        port = model.port
    assert denied.error == ("gemini: API error 401 (INTERNAL): the fake model server "
                            "fails on purpose")
    # The server is gone: the same port now refuses.
    request = request_for(model, workspace, gemini_env,
                          env={"GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{port}"})
    start = time.monotonic()
    refused, _ = await run(request)
    assert time.monotonic() - start < 20
    assert refused.error is not None and "\n" not in refused.error
    assert refused.error == ("gemini: API error: exception TypeError: fetch failed "
                             "sending request")


async def test_missing_api_key(workspace: Path, gemini_env: dict[str, str]) -> None:
    with FakeModel(Gemini()) as model:
        request = request_for(model, workspace, gemini_env)
        env = {k: v for k, v in request.env.items() if k != "GEMINI_API_KEY"}
        assert "GEMINI_API_KEY" not in os.environ
        result, _ = await run(AgentRequest(prompt="hi", workspace=workspace, env=env,
                                           state_dir=request.state_dir, timeout_s=30,
                                           grace_s=1.0))
    assert not result.ok and result.exit_code == 41
    assert result.error == ("gemini exited with 41: When using Gemini API, you must "
                            "specify the GEMINI_API_KEY environment variable.")
    assert not model.posts()


async def test_missing_binary(workspace: Path, gemini_env: dict[str, str]) -> None:
    request = AgentRequest(prompt="hi", workspace=workspace, env=gemini_env,
                           command=("no-such-gemini",))
    with pytest.raises(AgentUnavailable) as caught:
        await run(request)
    assert str(caught.value) == ("gemini: 'no-such-gemini' is not installed or not on "
                                 "PATH (install @google/gemini-cli)")
    bare = {**gemini_env, "PATH": "/nonexistent"}
    with pytest.raises(AgentUnavailable, match="'gemini' is not installed"):
        await run(AgentRequest(prompt="hi", workspace=workspace, env=bare))


async def test_shell_follows_the_permissions(workspace: Path,
                                             gemini_env: dict[str, str]) -> None:
    steps = [Step(tool="shell", args={"command": "echo ran > shell.txt"}),
             Step(text="Shell done.")]
    with FakeModel(Gemini(), steps) as model:
        denied, denied_events = await run(request_for(model, workspace, gemini_env))
        offered = {d["name"] for t in model.posts()[0]["tools"]
                   for d in t["functionDeclarations"]}
        assert not (workspace / "shell.txt").exists()
        allowed, allowed_events = await run(request_for(
            model, workspace, gemini_env, permissions=Permissions(allow=("shell",))))
        offered_then = {d["name"] for t in model.posts()[-1]["tools"]
                        for d in t["functionDeclarations"]}
    # Denied by default: not offered, and the call the model makes anyway fails.
    assert {"run_shell_command", "web_fetch"}.isdisjoint(offered)
    assert {"read_file", "write_file", "replace"} <= offered
    assert denied.ok, denied.error
    result = next(e for e in denied_events if e.kind == "tool_result")
    assert result.data["is_error"] and result.data["error_type"] == "tool_not_registered"
    # Allowed: offered and run.
    assert "run_shell_command" in offered_then and "web_fetch" not in offered_then
    assert allowed.ok, allowed.error
    assert (workspace / "shell.txt").read_text() == "ran\n"
    result = next(e for e in allowed_events if e.kind == "tool_result")
    assert not result.data["is_error"]


async def test_schema_goes_in_the_prompt(workspace: Path,
                                         gemini_env: dict[str, str]) -> None:
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}},
              "required": ["verdict"]}
    with FakeModel(Gemini(), [Step(text='{"verdict": "fine"}')]) as model:
        result, _ = await run(request_for(model, workspace, gemini_env, schema=schema))
    assert result.ok, result.error
    assert json.loads(result.text) == {"verdict": "fine"}
    sent = json.loads(user_text(model.posts()[0]))
    prompt = sent[-1]["parts"][-1]["text"]
    assert prompt.startswith("Finalise the notes.\n\n")
    assert json.loads(prompt[prompt.index("{"):]) == schema


def test_policy_from_permissions() -> None:
    default = policy_toml(Permissions())
    assert 'toolName = "web_fetch"\ndecision = "deny"' in default
    assert "allow" not in default.split("\n", 1)[1]
    mixed = policy_toml(Permissions(allow=("shell", "web_fetch"), deny=("read",)))
    assert 'toolName = "run_shell_command"\ndecision = "allow"' in mixed
    assert 'toolName = "read_file"\ndecision = "deny"' in mixed
    assert 'toolName = "web_fetch"\ndecision = "deny"' not in mixed
    everything = policy_toml(Permissions(allow=("*",), deny=("bash",)))
    assert 'toolName = "*"\ndecision = "allow"' in everything
    assert 'toolName = "run_shell_command"\ndecision = "deny"\npriority = 900' in everything


def test_parser_joins_deltas_and_keeps_the_unknown() -> None:
    parser = GeminiParser()
    lines = [
        {"type": "init", "session_id": "s1", "model": "m"},
        {"type": "message", "role": "assistant", "content": "Hel", "delta": True},
        {"type": "message", "role": "assistant", "content": "lo.", "delta": True},
        {"type": "error", "severity": "warning", "message": "loop  detected"},
        {"type": "telepathy", "x": 1},
        {"type": "result", "status": "success", "stats": {"input_tokens": 5}},
    ]
    events = [e for line in lines for e in parser.feed(json.dumps(line))]
    assert [e.kind for e in events] == ["session", "text", "raw", "raw", "usage",
                                        "finished"]
    assert events[1].text == "Hello." and events[1].raw is not None
    assert events[1].raw.count("\n") == 1  # both chunk lines kept as its raw
    assert events[2].text == "loop detected" and events[2].data["reason"] == "warning"
    assert events[3].data["reason"] == "unknown type 'telepathy'"
    assert parser.answer() == "Hello." and parser.texts == ["Hello."]
    assert parser.error is None


async def test_writes_outside_the_workspace_and_policy_denials(
        workspace: Path, tmp_path: Path, gemini_env: dict[str, str]) -> None:
    outside = tmp_path / "outside.txt"
    # A rule of the user's own, through request.args: its --policy adds to ours.
    rules = tmp_path / "no-secrets.toml"
    rules.write_text('[[rule]]\ntoolName = "write_file"\nargsPattern = "secret"\n'
                     'decision = "deny"\npriority = 950\ndenyMessage = "no secrets"\n')
    steps = [Step(tool="write", args={"path": str(outside), "content": "escaped\n"}),
             Step(tool="write", args={"path": "secret.txt", "content": "s3cret\n"}),
             Step(text="Both refused.")]
    with FakeModel(Gemini(), steps) as model:
        result, events = await run(request_for(model, workspace, gemini_env,
                                               args=("--policy", str(rules))))
    assert result.ok, result.error
    assert not outside.exists() and not (workspace / "secret.txt").exists()
    results = [e for e in events if e.kind == "tool_result"]
    assert [r.data.get("error_type") for r in results] == ["invalid_tool_params",
                                                          "policy_violation"]
    assert "Path not in workspace" in results[0].text
    permission = next(e for e in events if e.kind == "permission")
    assert permission.data["name"] == "write_file"
    assert permission.data["decision"] == "deny"
    assert permission.data["input"]["content"] == "s3cret\n"
    assert permission.text == "Tool execution denied by policy. no secrets"


async def test_a_read_only_request_cannot_edit(workspace: Path,
                                               gemini_env: dict[str, str]) -> None:
    steps = [Step(tool="read", args={"path": "notes.txt"}),
             Step(tool="write", args={"path": "out.txt", "content": "planned\n"}),
             Step(tool="edit", args={"path": "notes.txt", "old": "draft", "new": "final"}),
             Step(text="Could not write.")]
    with FakeModel(Gemini(), steps) as model:
        # Every tool allowed by the config: read-only still refuses the edits.
        result, events = await run(request_for(model, workspace, gemini_env,
                                               read_only=True,
                                               permissions=Permissions(allow=("*",))))
        offered = {d["name"] for t in model.posts()[0]["tools"]
                   for d in t["functionDeclarations"]}
    assert result.ok, result.error
    assert result.text == "Could not write."
    assert not (workspace / "out.txt").exists()
    assert (workspace / "notes.txt").read_text() == "status: draft\n"
    assert "read_file" in offered and {"write_file", "replace"}.isdisjoint(offered)
    results = [e for e in events if e.kind == "tool_result"]
    assert not results[0].data["is_error"]
    assert [r.data.get("error_type") for r in results[1:]] == ["tool_not_registered"] * 2
    # Should the CLI offer them anyway, the policy denies them over any allow.
    rules = policy_toml(Permissions(allow=("*", "write")), read_only=True)
    assert 'toolName = "write_file"\ndecision = "deny"\npriority = 950' in rules
    assert 'toolName = "replace"\ndecision = "deny"\npriority = 950' in rules


async def test_prepare_writes_the_policy_before_argv(workspace: Path,
                                                     gemini_env: dict[str, str]) -> None:
    gemini = GeminiBackend()
    with FakeModel(Gemini(), [Step(text="Read only, done.")]) as model:
        plain = request_for(model, workspace, gemini_env)
        reader = request_for(model, workspace, gemini_env, read_only=True)
        await asyncio.gather(gemini.prepare(plain), gemini.prepare(reader))
        state = workspace.parent / "state"
        policies = {p.name: p.read_text() for p in state.glob("gemini-policy-*.toml")}
        assert len(policies) == 2  # each request its own rules
        for path in state.iterdir():
            path.unlink()
        # argv writes nothing once prepared: each request gets the file prepared for it.
        argv = gemini.argv(reader)
        policy = Path(argv[argv.index("--policy") + 1])
        assert policy.name in policies and policy.name not in os.listdir(state)
        assert "write_file" in policies[policy.name]
        assert argv[argv.index("--approval-mode") + 1] == "default"
        other = gemini.argv(plain)
        assert other[other.index("--policy") + 1] != str(policy)
        gemini._write_policy(reader)  # the file back, for the real run
        result = await run_agent(gemini, reader)
    assert result.ok, result.error
    assert result.text == "Read only, done."
