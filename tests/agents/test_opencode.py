"""The opencode backend against the real ``opencode`` (opencode-ai 1.18.33) and a fake
OpenAI Chat Completions server on 127.0.0.1: real tool calls in opencode's own tool
names, resume, cancel (opencode ignores SIGINT: it ends by SIGKILL of its group),
bad lines, failures. The user's provider is given the way a user gives it: an
``opencode.json`` in the workspace, which the backend's generated config must not
displace."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.agents.base import AgentEvent, AgentRequest, AgentUnavailable, Permissions
from sisyphus_tui.agents.opencode import OpencodeBackend
from sisyphus_tui.agents.runner import AgentResult, run_agent
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.openai_chat import OpenAIChat, declared_tools

MODEL = "fake/fake-model"


def workspace(tmp_path: Path, url: str) -> Path:
    """A workspace with a file to read and the user's provider in its opencode.json."""
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "notes.txt").write_text("the notes say hello\n")
    (ws / "opencode.json").write_text(json.dumps({"provider": {"fake": {
        "npm": "@ai-sdk/openai-compatible", "name": "Fake",
        "options": {"baseURL": f"{url}/v1", "apiKey": "fake-key"},
        "models": {"fake-model": {"name": "Fake model"}}}}}))
    return ws


def request(ws: Path, env: dict[str, str], **kw: Any) -> AgentRequest:
    """A request with short timeouts and grace, on the fake model."""
    kw.setdefault("prompt", "Read notes.txt, then write out.txt.")
    kw.setdefault("model", MODEL)
    kw.setdefault("timeout_s", 60.0)
    kw.setdefault("grace_s", 1.0)
    return AgentRequest(workspace=ws, env=env, state_dir=ws.parent / "state", **kw)


async def run(req: AgentRequest) -> tuple[AgentResult, list[AgentEvent]]:
    """Run the request; the result and every event, in order."""
    events: list[AgentEvent] = []
    result = await run_agent(OpencodeBackend(), req, events.append)
    return result, events


def main_calls(model: FakeModel) -> list[dict[str, Any]]:
    """The model calls with tools (the title call has none)."""
    return [body for body in model.posts() if body.get("tools")]


def system_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content")) for m in body["messages"]
                     if m.get("role") == "system")


def test_a_run_reads_and_writes_files(tmp_path: Path, agent_env: dict[str, str]) -> None:
    schema = {"type": "object", "properties": {"written": {"type": "boolean"}},
              "required": ["written"]}
    steps = [Step(text="Reading the notes.", tool="read", args={"path": "notes.txt"},
                  thinking="The notes first."),
             Step(tool="write", args={"path": "out.txt", "content": "copied hello\n"}),
             Step(text='{"written": true}', input_tokens=200, output_tokens=40,
                  cached_tokens=50)]
    with FakeModel(OpenAIChat(), steps) as model:
        ws = workspace(tmp_path, model.url)
        result, events = asyncio.run(run(request(
            ws, agent_env, instructions="Answer tersely. INSTRUCTION-MARK-7",
            schema=schema)))
        calls = main_calls(model)
    assert result.ok, result.error
    assert (ws / "out.txt").read_text() == "copied hello\n"
    assert result.session is not None and result.session.startswith("ses_")
    assert json.loads(result.text) == {"written": True}
    kinds = [e.kind for e in events]
    assert kinds[0] == "session" and events[0].data["session_id"] == result.session
    order = ["thinking", "text", "tool_call", "tool_result", "usage", "tool_call",
             "tool_result", "usage", "text", "usage", "finished"]
    assert [k for k in kinds if k in order] == order
    calls_ev = [e for e in events if e.kind == "tool_call"]
    assert calls_ev[0].data["name"] == "read"
    assert calls_ev[0].data["input"]["filePath"] == str(ws.resolve() / "notes.txt")
    assert calls_ev[1].data["name"] == "write"
    assert calls_ev[1].data["input"]["content"] == "copied hello\n"
    read_result = next(e for e in events if e.kind == "tool_result")
    assert "the notes say hello" in read_result.text and not read_result.data["is_error"]
    assert events[-1].kind == "finished" and events[-1].data["stop_reason"] == "stop"
    # Summed over the three model calls; opencode counts cached tokens apart.
    assert result.usage["input_tokens"] == 120 + 120 + 150
    assert result.usage["output_tokens"] == 30 + 30 + 40
    assert result.usage["cached_tokens"] == 50
    # The instructions reach the system prompt, the schema the prompt; bash is
    # denied by default, so opencode does not even offer it.
    assert "INSTRUCTION-MARK-7" in system_text(calls[0])
    user = next(m for m in calls[0]["messages"] if m["role"] == "user")
    assert "Read notes.txt, then write out.txt." in str(user["content"])
    assert '"written"' in str(user["content"])
    assert "bash" not in declared_tools(calls[0])
    assert {"read", "write", "edit"} <= set(declared_tools(calls[0]))


def test_an_allowed_tool_runs(tmp_path: Path, agent_env: dict[str, str]) -> None:
    steps = [Step(tool="shell", args={"command": "echo ran > ran.txt"})]
    with FakeModel(OpenAIChat(), steps) as model:
        ws = workspace(tmp_path, model.url)
        result, events = asyncio.run(run(request(
            ws, agent_env, prompt="Run it.", permissions=Permissions(allow=("shell",)))))
    assert result.ok, result.error
    assert (ws / "ran.txt").read_text() == "ran\n"
    assert [e.data["name"] for e in events if e.kind == "tool_call"] == ["bash"]


def test_resume_continues_the_session(tmp_path: Path, agent_env: dict[str, str]) -> None:
    steps = [Step(text="First answer: BANANA."), Step(text="Second answer.")]
    with FakeModel(OpenAIChat(), steps) as model:
        ws = workspace(tmp_path, model.url)
        first, _ = asyncio.run(run(request(ws, agent_env, prompt="Remember a fruit.")))
        assert first.ok, first.error
        second, events = asyncio.run(run(request(ws, agent_env, prompt="Which fruit?",
                                                 session=first.session)))
        calls = main_calls(model)
    assert second.ok, second.error
    assert second.session == first.session
    assert second.text == "Second answer."
    history = calls[-1]["messages"]
    said = [(m["role"], str(m.get("content"))) for m in history if m["role"] != "system"]
    assert ("user", "Remember a fruit.") in said
    assert any(role == "assistant" and "BANANA" in text for role, text in said)
    assert said[-1] == ("user", "Which fruit?")


def _group_of(ws: Path) -> set[int]:
    """The pids of the process group of the opencode started for ``ws``."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if str(ws.resolve()).encode() in cmdline and any(b"opencode" in a for a in cmdline):
            pgid = int(stat.rsplit(")", 1)[1].split()[2])
            return {p for p in _pids() if _pgid(p) == pgid}
    return set()


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("ignores_sigint", [False, True])
def test_cancel_ends_the_whole_group(tmp_path: Path, agent_env: dict[str, str],
                                     ignores_sigint: bool) -> None:
    command: tuple[str, ...] = ()
    grace = 1.0 if ignores_sigint else 3.0
    if ignores_sigint:
        # SIG_IGN survives exec: this opencode cannot be stopped by SIGINT.
        wrapper = tmp_path / "deaf-opencode"
        wrapper.write_text("#!/bin/sh\ntrap '' INT\nexec opencode \"$@\"\n")
        wrapper.chmod(0o755)
        command = (str(wrapper),)
    with FakeModel(OpenAIChat(), stall=True) as model:
        ws = workspace(tmp_path, model.url)

        async def scenario() -> tuple[float, set[int]]:
            task = asyncio.create_task(run(request(ws, agent_env, grace_s=grace,
                                                   command=command)))
            deadline = time.monotonic() + 30
            while not main_calls(model):  # the model call is open, and stalls
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.05)
            group = _group_of(ws)
            assert group
            start = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - start, group

        took, group = asyncio.run(scenario())
    if ignores_sigint:
        assert 0.9 <= took < 6  # the grace, then SIGKILL of the group
    else:
        assert took < 2.5  # opencode 1.18.33 ends on SIGINT, well within the grace
    assert not [pid for pid in group if _alive(pid)]


def test_huge_malformed_and_unknown_lines(tmp_path: Path, agent_env: dict[str, str]) -> None:
    huge = "x" * 2_100_000  # one text line over the runner's 1 MB bound
    # Not the last line: opencode exits without draining its stdout, so a huge last
    # line can take the turn's step_finish with it.
    steps = [Step(text=huge, tool="read", args={"path": "notes.txt"}),
             Step(text="After the long one.")]
    with FakeModel(OpenAIChat(), steps) as model:
        ws = workspace(tmp_path, model.url)
        result, events = asyncio.run(run(request(ws, agent_env, prompt="Say a lot.")))
    assert result.ok, result.error
    assert result.text == "After the long one."
    cut = [e for e in events if e.kind == "raw" and
           e.data["reason"].startswith("line over the bound")]
    assert len(cut) == 1 and len(cut[0].text) < 20000

    wrapper = tmp_path / "noisy-opencode"
    wrapper.write_text("#!/bin/sh\necho 'this is not JSON'\n"
                       "echo '{\"type\": \"from_the_future\", \"sessionID\": \"x\"}'\n"
                       "exec opencode \"$@\"\n")
    wrapper.chmod(0o755)
    with FakeModel(OpenAIChat(), [Step(text="Fine.")]) as model:
        (tmp_path / "second").mkdir()
        ws = workspace(tmp_path / "second", model.url)
        result, events = asyncio.run(run(request(ws, agent_env, prompt="Hi.",
                                                 command=(str(wrapper),))))
    assert result.ok, result.error
    assert result.text == "Fine."
    raws = [e.data["reason"] for e in events if e.kind == "raw"]
    assert "not JSON" in raws and "unknown type 'from_the_future'" in raws


def test_a_failing_cli_says_why_in_one_line(tmp_path: Path,
                                            agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIChat(), [Step(text="never")]) as model:
        ws = workspace(tmp_path, model.url)
        gone, _ = asyncio.run(run(request(ws, agent_env, session="ses_nosuchsession01")))
        unknown, events = asyncio.run(run(request(ws, agent_env, model="fake/no-such-model")))
    assert gone.exit_code == 1 and not gone.ok
    assert gone.error == "opencode exited with 1: Error: Session not found"
    assert unknown.exit_code == 1 and unknown.error is not None
    assert "\n" not in unknown.error and "Model not found: fake/no-such-model" in unknown.error
    assert [e.text for e in events if e.kind == "error"] == [unknown.error]


def test_http_500_fails_in_bounded_time(tmp_path: Path, agent_env: dict[str, str]) -> None:
    # opencode retries a 5xx five times (over a minute) unless told when to retry.
    with FakeModel(OpenAIChat(), fail_status=500,
                   fail_headers={"retry-after-ms": "0"}) as model:
        ws = workspace(tmp_path, model.url)
        start = time.monotonic()
        result, events = asyncio.run(run(request(ws, agent_env)))
        took = time.monotonic() - start
    assert took < 30
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("opencode: HTTP 500: the fake model server fails on purpose")
    assert [e.kind for e in events].count("error") == 1


def test_missing_binary(tmp_path: Path, agent_env: dict[str, str]) -> None:
    req = request(tmp_path, agent_env, command=("no-such-opencode",))
    with pytest.raises(AgentUnavailable, match="'no-such-opencode' is not installed"):
        asyncio.run(run_agent(OpencodeBackend(), req))
    bare = request(tmp_path, {**agent_env, "PATH": str(tmp_path)})
    with pytest.raises(AgentUnavailable, match=r"install opencode-ai"):
        asyncio.run(run_agent(OpencodeBackend(), bare))


class UndeclaredTools(OpenAIChat):
    """Calls a tool by opencode's own name and parameters (``as:NAME``), declared or
    not: a model that tries a tool it was not offered."""

    def tool_call(self, step: Step, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if str(step.tool).startswith("as:"):
            return str(step.tool)[3:], dict(step.args)
        return super().tool_call(step, body)


def test_a_read_only_request_cannot_edit(tmp_path: Path, agent_env: dict[str, str]) -> None:
    ws = tmp_path / "ws"
    steps = [Step(tool="read", args={"path": "notes.txt"}),
             Step(tool="as:write", args={"filePath": str(ws / "out.txt"),
                                         "content": "planned\n"}),
             Step(tool="as:edit", args={"filePath": str(ws / "notes.txt"),
                                        "oldString": "hello", "newString": "bye"}),
             Step(text="Could not write.")]
    with FakeModel(UndeclaredTools(), steps) as model:
        ws = workspace(tmp_path, model.url)
        # Every tool allowed by the config: read-only still refuses the edits.
        result, events = asyncio.run(run(request(
            ws, agent_env, read_only=True, permissions=Permissions(allow=("*",)))))
        calls = main_calls(model)
    assert result.ok, result.error
    assert result.text == "Could not write."
    assert not (ws / "out.txt").exists()
    assert (ws / "notes.txt").read_text() == "the notes say hello\n"
    offered = set(declared_tools(calls[0]))
    assert "read" in offered and {"write", "edit"}.isdisjoint(offered)
    results = [e for e in events if e.kind == "tool_result"]
    assert not results[0].data["is_error"]
    assert len(results) == 3 and all(r.data["is_error"] for r in results[1:])
    asked = [e for e in events if e.kind == "permission"]
    assert [(e.data["name"], e.data["decision"]) for e in asked] == [("write", "deny"),
                                                                     ("edit", "deny")]


def test_the_users_config_content_is_never_written_to_disk(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    secret = "sk-USER-SECRET-4f1c9"
    with FakeModel(OpenAIChat(), [Step(text="Fine.")]) as model:
        ws = tmp_path / "ws"
        ws.mkdir()
        # The user's provider, key and all, given the way a user may: in the env.
        user = {"provider": {"fake": {
            "npm": "@ai-sdk/openai-compatible", "name": "Fake",
            "options": {"baseURL": f"{model.url}/v1", "apiKey": secret},
            "models": {"fake-model": {"name": "Fake model"}}}}}
        env = {**agent_env, "OPENCODE_CONFIG_CONTENT": json.dumps(user)}
        # The state folder inside the repo, as the swarm keeps it.
        req = AgentRequest(prompt="Say fine.", workspace=ws, env=env, model=MODEL,
                           instructions="Be brief.", state_dir=ws / ".sisyphus" / "state",
                           timeout_s=60.0, grace_s=1.0)
        result, _ = asyncio.run(run(req))
    assert result.ok, result.error
    assert result.text == "Fine."  # the user's provider was used: the key reached it
    written = [path for path in ws.rglob("*") if path.is_file()]
    assert (ws / ".sisyphus" / "state" / "opencode-config.json") in written
    assert [path for path in written if secret.encode() in path.read_bytes()] == []
    ours = json.loads((ws / ".sisyphus" / "state" / "opencode-config.json").read_text())
    assert set(ours) == {"agent", "instructions"}
