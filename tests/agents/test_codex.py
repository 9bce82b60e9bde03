"""The Codex backend against the real ``codex`` CLI (pinned 0.171.0) and a fake OpenAI
Responses server on 127.0.0.1: an edit with real tool calls, a resumed thread, cancel
(and an agent that ignores SIGINT), bad lines, failures."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from sisyphus_tui.agents.base import AgentEvent, AgentRequest, AgentUnavailable, Permissions
from sisyphus_tui.agents.codex import CodexBackend
from sisyphus_tui.agents.runner import AgentResult, run_agent
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.openai_responses import OpenAIResponses

# A model Codex 0.171.0 knows: it then offers the apply_patch tool (and warns of nothing).
MODEL = "gpt-5.5"
KEY_VAR = "SISYPHUS_FAKE_OPENAI_KEY"


def configure(env: dict[str, str], url: str, *, idle_ms: int = 60000) -> dict[str, str]:
    """Point Codex at the fake server through ``$CODEX_HOME/config.toml``, no retries."""
    home = Path(env["CODEX_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'model_provider = "fake"\nmodel = "{MODEL}"\n\n'
        "[model_providers.fake]\n"
        'name = "fake"\n'
        f'base_url = "{url}/v1"\n'
        f'env_key = "{KEY_VAR}"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        f"stream_idle_timeout_ms = {idle_ms}\n", encoding="utf-8")
    return {**env, KEY_VAR: "sk-fake"}


def request(tmp_path: Path, env: dict[str, str], prompt: str = "Do the task.",
            **fields: object) -> AgentRequest:
    """A request in ``tmp_path/ws`` with short timeouts."""
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    base: dict[str, object] = {"env": env, "timeout_s": 60.0, "grace_s": 1.0,
                               "state_dir": tmp_path / "state"}
    base.update(fields)
    return AgentRequest(prompt, workspace, **base)  # type: ignore[arg-type]


async def run(req: AgentRequest) -> tuple[AgentResult, list[AgentEvent]]:
    """Run it; the result and every event."""
    events: list[AgentEvent] = []
    result = await run_agent(CodexBackend(), req, events.append)
    return result, events


def kinds(events: list[AgentEvent]) -> list[str]:
    return [event.kind for event in events]


def group_of(codex_home: str) -> set[int]:
    """The process groups of the processes running with this CODEX_HOME."""
    groups: set[int] = set()
    needle = f"CODEX_HOME={codex_home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        groups.add(int(stat.rsplit(")", 1)[1].split()[2]))
    return groups


def alive_in(groups: set[int]) -> list[int]:
    """The pids still alive (not zombies) in these process groups."""
    alive: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


async def until(condition: object, timeout_s: float = 20.0) -> None:
    """Wait until ``condition()`` holds (a condition, not a guess at a duration)."""
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


EDIT_STEPS = [
    Step(text="Reading the notes.", tool="read", args={"path": "notes.txt"},
         thinking="Read the file first."),
    Step(tool="edit", args={"path": "notes.txt", "old": "hello world", "new": "hello codex"}),
    Step(tool="write", args={"path": "out.txt", "content": "written by codex\n"}),
    Step(text="Edited notes.txt and wrote out.txt.", input_tokens=200, output_tokens=40,
         cached_tokens=50),
]


async def test_edits_files_with_its_own_tools(tmp_path: Path,
                                              agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIResponses(), EDIT_STEPS) as model:
        env = configure(agent_env, model.url)
        req = request(tmp_path, env, "Edit notes.txt.", instructions='Be brief. "ZETA-7"',
                      model=MODEL)
        (req.workspace / "notes.txt").write_text("hello world\nsecond line\n")
        result, events = await run(req)

    assert result.ok, result
    assert (req.workspace / "notes.txt").read_text() == "hello codex\nsecond line\n"
    assert (req.workspace / "out.txt").read_text() == "written by codex\n"
    assert events[0].kind == "session" and events[0].data["session_id"] == result.session
    assert result.text == "Edited notes.txt and wrote out.txt."
    order = [kind for kind in kinds(events) if kind != "raw"]
    assert order == ["session", "thinking", "text", "tool_call", "tool_result",
                     "tool_call", "tool_result", "tool_call", "tool_result", "text",
                     "usage", "finished"]
    calls = [event for event in events if event.kind == "tool_call"]
    results = [event for event in events if event.kind == "tool_result"]
    assert calls[0].data["name"] == "command_execution"
    assert "cat notes.txt" in calls[0].data["input"]["command"]
    assert results[0].data["exit_code"] == 0 and "hello world" in results[0].text
    assert calls[1].data["name"] == "file_change"
    assert [(Path(c["path"]).name, c["kind"]) for c in calls[1].data["input"]["changes"]] \
        == [("notes.txt", "update")]
    assert [(Path(c["path"]).name, c["kind"]) for c in calls[2].data["input"]["changes"]] \
        == [("out.txt", "add")]
    assert all(not event.data["is_error"] for event in results)
    assert [event.data["id"] for event in calls] == [event.data["id"] for event in results]
    assert next(e for e in events if e.kind == "thinking").text == "Read the file first."
    usage = result.usage
    assert (usage["input_tokens"], usage["output_tokens"], usage["cached_tokens"]) \
        == (3 * 120 + 200, 3 * 30 + 40, 50)
    assert usage["scope"] == "turn"
    # The request reached the model as asked: the model, the instructions, the sandbox.
    first = model.posts()[0]
    assert first["model"] == MODEL
    assert "ZETA-7" in json.dumps(first["input"])
    metadata = json.loads(first["client_metadata"]["x-codex-turn-metadata"])
    assert metadata["sandbox_mode"] == "workspace-write"


async def test_the_sandbox_keeps_commands_inside_the_workspace(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    outside = tmp_path / "outside.txt"
    # The last echo keeps the exit code 0: a command the sandbox refused with a failing
    # exit code shows no item at all in `exec --json` (0.171.0); the model still sees it.
    command = f"echo in > inside.txt; echo out > {outside}; echo status=$?"
    steps = [Step(tool="shell", args={"command": command}), Step(text="Tried.")]
    with FakeModel(OpenAIResponses(), steps) as model:
        env = configure(agent_env, model.url)
        # The test's folders are all under /tmp, writable by default: take /tmp out.
        req = request(tmp_path, env, args=(
            "-c", "sandbox_workspace_write.exclude_slash_tmp=true",
            "-c", "sandbox_workspace_write.exclude_tmpdir_env_var=true"))
        result, events = await run(req)
    assert result.ok, result
    assert (req.workspace / "inside.txt").read_text() == "in\n"
    assert not outside.exists()
    output = next(event for event in events if event.kind == "tool_result")
    assert "Read-only file system" in output.text and "status=1" in output.text


@pytest.mark.parametrize(("allow", "network", "search"), [
    ((), "Network access is restricted", False),  # denied by default
    (("network", "web_search"), "Network access is enabled", True),
])
async def test_permissions_open_the_network_and_the_search_tool(
        tmp_path: Path, agent_env: dict[str, str], allow: tuple[str, ...], network: str,
        search: bool) -> None:
    with FakeModel(OpenAIResponses(), [Step(text="ok")]) as model:
        env = configure(agent_env, model.url)
        result, _ = await run(request(tmp_path, env, permissions=Permissions(allow=allow)))
        body = model.posts()[0]
    assert result.ok, result
    assert network in json.dumps(body["input"])
    assert any(tool.get("type") == "web_search" for tool in body["tools"]) is search


async def test_resume_continues_the_thread(tmp_path: Path,
                                           agent_env: dict[str, str]) -> None:
    steps = [Step(text="The first answer."),
             Step(text="The second answer.", input_tokens=300, output_tokens=20)]
    with FakeModel(OpenAIResponses(), steps) as model:
        env = configure(agent_env, model.url)
        first, _ = await run(request(tmp_path, env, "FIRST-PROMPT"))
        assert first.ok and first.session, first
        second, events = await run(request(tmp_path, env, "SECOND-PROMPT",
                                           session=first.session))
        posts = model.posts()
    assert second.ok, second
    assert second.session == first.session
    assert second.text == "The second answer."
    history = json.dumps(posts[-1]["input"])
    assert "FIRST-PROMPT" in history and "The first answer." in history
    assert history.index("The first answer.") < history.index("SECOND-PROMPT")
    # Codex reports the thread's totals after a resume; the backend says the turn's.
    assert (second.usage["input_tokens"], second.usage["output_tokens"]) == (300, 20)
    assert second.usage["scope"] == "turn"


async def test_output_schema_reaches_the_model(tmp_path: Path,
                                               agent_env: dict[str, str]) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"], "additionalProperties": False}
    with FakeModel(OpenAIResponses(), [Step(text='{"answer": 42}')]) as model:
        env = configure(agent_env, model.url)
        result, _ = await run(request(tmp_path, env, schema=schema))
        body = model.posts()[0]
    assert result.ok, result
    assert json.loads(result.text) == {"answer": 42}
    assert body["text"]["format"]["type"] == "json_schema"
    assert body["text"]["format"]["schema"] == schema


async def test_cancel_ends_the_whole_group(tmp_path: Path,
                                           agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIResponses(), stall=True) as model:
        env = configure(agent_env, model.url)
        task = asyncio.create_task(run(request(tmp_path, env)))
        await until(lambda: model.posts())
        groups = group_of(env["CODEX_HOME"])
        assert groups and alive_in(groups)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5.0
        assert alive_in(groups) == []


async def test_an_agent_that_ignores_sigint_is_killed(tmp_path: Path,
                                                      agent_env: dict[str, str]) -> None:
    wrapper = tmp_path / "stubborn-codex"
    # Codex itself ends on SIGINT; its wrapper here does not (nor its last child).
    wrapper.write_text("#!/bin/sh\ntrap '' INT\ncodex \"$@\"\nexec sleep 60\n")
    wrapper.chmod(0o755)
    with FakeModel(OpenAIResponses(), stall=True) as model:
        env = configure(agent_env, model.url)
        task = asyncio.create_task(run(request(tmp_path, env, command=(str(wrapper),))))
        await until(lambda: model.posts())
        groups = group_of(env["CODEX_HOME"])
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        took = time.monotonic() - started
        assert 1.0 <= took < 5.0  # the grace (1 s) passed, then SIGKILL
        assert alive_in(groups) == []


async def test_a_huge_line_is_cut_and_kept_raw(tmp_path: Path,
                                               agent_env: dict[str, str]) -> None:
    huge = "x" * (2 << 20)
    with FakeModel(OpenAIResponses(), [Step(text=huge)]) as model:
        env = configure(agent_env, model.url)
        result, events = await run(request(tmp_path, env))
    assert result.ok, result
    cut = [event for event in events if event.kind == "raw"
           and "over the bound" in event.data.get("reason", "")]
    assert len(cut) == 1 and cut[0].text.startswith('{"type":"item.completed"')
    assert kinds(events)[-2:] == ["usage", "finished"]


async def test_stray_lines_and_unknown_events_are_raw(tmp_path: Path,
                                                      agent_env: dict[str, str]) -> None:
    wrapper = tmp_path / "chatty-codex"
    wrapper.write_text("#!/bin/sh\necho 'Starting codex, not JSON'\n"
                       "echo '{\"type\":\"thread.renamed\",\"name\":\"x\"}'\n"
                       "echo '{\"type\":\"item.completed\",\"item\":{\"id\":\"i9\","
                       "\"type\":\"hologram\"}}'\n"
                       "echo '[1, 2]'\n"
                       "exec codex \"$@\"\n")
    wrapper.chmod(0o755)
    with FakeModel(OpenAIResponses(), [Step(text="Fine.")]) as model:
        env = configure(agent_env, model.url)
        result, events = await run(request(tmp_path, env, command=(str(wrapper),)))
    assert result.ok and result.text == "Fine.", result
    raw = [(event.text, event.data["reason"]) for event in events if event.kind == "raw"]
    assert raw[0] == ("Starting codex, not JSON", "not JSON")
    assert "unknown type 'thread.renamed'" in raw[1][1]
    assert "unknown item type 'hologram'" in raw[2][1]
    assert raw[3][1] == "not an object"
    assert "hologram" in str(events[2].raw)  # the line itself is kept


async def test_a_bad_config_value_is_one_error_line(tmp_path: Path,
                                                    agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIResponses()) as model:
        env = configure(agent_env, model.url)
        result, events = await run(request(tmp_path, env,
                                           args=("-c", 'model_provider="nowhere"')))
    assert not result.ok and result.exit_code != 0
    assert result.error is not None and "\n" not in result.error
    assert "Model provider `nowhere` not found" in result.error
    assert "backtrace" not in result.error.lower()
    assert [event.text for event in events if event.kind == "error"] == [result.error]


async def test_an_invalid_flag_exits_non_zero(tmp_path: Path,
                                              agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIResponses()) as model:
        env = configure(agent_env, model.url)
        result, _ = await run(request(tmp_path, env, args=("--no-such-flag",)))
    assert result.exit_code == 2 and not result.ok
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("codex exited with 2: error: unexpected argument "
                                   "'--no-such-flag'")


@pytest.mark.parametrize(("status", "said"), [
    (500, "high demand"),  # what Codex 0.171.0 says for any 5xx
    (401, "401 Unauthorized"),
])
async def test_a_failing_model_server_is_one_error_line(
        tmp_path: Path, agent_env: dict[str, str], status: int, said: str) -> None:
    with FakeModel(OpenAIResponses(), fail_status=status) as model:
        env = configure(agent_env, model.url)
        started = time.monotonic()
        result, events = await run(request(tmp_path, env))
        posts = len(model.posts())
    assert time.monotonic() - started < 15.0
    assert posts == 1  # no retries
    assert not result.ok and result.exit_code == 1
    assert result.error is not None and "\n" not in result.error and said in result.error
    assert [event.text for event in events if event.kind == "error"] == [result.error]


async def test_a_missing_api_key_is_one_error_line(tmp_path: Path,
                                                   agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIResponses()) as model:
        env = configure(agent_env, model.url)
        del env[KEY_VAR]
        result, _ = await run(request(tmp_path, env))
        assert model.posts() == []
    assert result.error == f"codex: Missing environment variable: `{KEY_VAR}`."


async def test_an_unreachable_server_ends_in_bounded_time(tmp_path: Path,
                                                          agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIResponses()) as model:
        url = model.url  # a port that was just free, then closed
    env = configure(agent_env, url)
    started = time.monotonic()
    result, _ = await run(request(tmp_path, env))
    assert time.monotonic() - started < 15.0
    assert not result.ok
    assert result.error is not None and "waiting for network" in result.error


async def test_a_stalled_stream_times_out_with_codex_idle_timeout(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    with FakeModel(OpenAIResponses(), stall=True) as model:
        env = configure(agent_env, model.url, idle_ms=1000)
        result, _ = await run(request(tmp_path, env))
    assert not result.ok and not result.timed_out
    assert result.error == "codex: stream disconnected before completion: idle timeout " \
                           "waiting for SSE"


async def test_a_missing_binary_is_unavailable(tmp_path: Path,
                                               agent_env: dict[str, str]) -> None:
    with pytest.raises(AgentUnavailable, match="'no-such-cli' is not installed") as raised:
        await run(request(tmp_path, agent_env, command=("no-such-cli",)))
    assert "\n" not in str(raised.value) and "@openai/codex" in str(raised.value)
    bare = {**agent_env, "PATH": "/nonexistent"}
    with pytest.raises(AgentUnavailable, match="'codex' is not installed"):
        await run(request(tmp_path, bare))


def test_the_process_is_started_with_the_policy(tmp_path: Path) -> None:
    req = AgentRequest("-p starts with a dash", tmp_path, session="abc-123",
                       model="m1", args=("--extra",))
    argv = CodexBackend().argv(req)
    assert argv[:2] == ["exec", "resume"]
    assert argv[-3:] == ["--", "abc-123", "-p starts with a dash"]
    assert argv.index("--extra") < argv.index("--")
    joined = " ".join(argv)
    assert 'approval_policy="never"' in joined and 'sandbox_mode="workspace-write"' in joined
    assert CodexBackend().environment(req)["RUST_BACKTRACE"] == "0"


async def test_a_read_only_request_cannot_write(tmp_path: Path,
                                                agent_env: dict[str, str]) -> None:
    steps = [Step(tool="write", args={"path": "out.txt", "content": "planned\n"}),
             Step(tool="shell", args={"command": "echo x > shell.txt; echo status=$?"}),
             Step(text="Could not write.")]
    with FakeModel(OpenAIResponses(), steps) as model:
        env = configure(agent_env, model.url)
        req = request(tmp_path, env, model=MODEL, read_only=True,
                      permissions=Permissions(allow=("*",)))
        result, events = await run(req)
        first, second = model.posts()[0], model.posts()[1]
    assert result.ok, result
    assert result.text == "Could not write."
    assert not (req.workspace / "out.txt").exists()
    assert not (req.workspace / "shell.txt").exists()
    metadata = json.loads(first["client_metadata"]["x-codex-turn-metadata"])
    assert metadata["sandbox_mode"] == "read-only"
    # The refused patch shows no item in `exec --json` (0.171.0); the model was told.
    assert "blocked by read-only sandbox" in json.dumps(second["input"])
    results = [event for event in events if event.kind == "tool_result"]
    assert len(results) == 1 and "Read-only file system" in results[0].text


async def test_prepare_does_the_disk_work_before_argv(tmp_path: Path,
                                                      agent_env: dict[str, str]) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"], "additionalProperties": False}
    steps = [Step(text="The first answer."),
             Step(text='{"answer": 7}', input_tokens=300, output_tokens=20)]
    with FakeModel(OpenAIResponses(), steps) as model:
        env = configure(agent_env, model.url)
        (tmp_path / "state").mkdir()
        first, _ = await run(request(tmp_path, env, "FIRST-PROMPT"))
        assert first.ok and first.session, first
        codex = CodexBackend()
        req = request(tmp_path, env, "SECOND-PROMPT", session=first.session, schema=schema)
        other = request(tmp_path, env, "OTHER", schema=schema)
        await codex.prepare(req)
        schema_file = tmp_path / "state" / "codex-output-schema.json"
        assert json.loads(schema_file.read_text()) == schema
        # argv reads and writes nothing now: the sessions it would scan and the state
        # folder it would write to are gone, and stay gone.
        sessions = Path(env["CODEX_HOME"]) / "sessions"
        moved = tmp_path / "sessions-elsewhere"
        sessions.rename(moved)
        schema_file.unlink()
        argv = codex.argv(req)
        assert not schema_file.exists() and not sessions.exists()
        assert argv[argv.index("--output-schema") + 1] == str(schema_file)
        # Another request, not prepared, does the work in argv itself.
        codex.argv(other)
        assert schema_file.exists()
        moved.rename(sessions)
        events: list[AgentEvent] = []
        second = await run_agent(codex, req, events.append)
    assert second.ok, second
    assert json.loads(second.text) == {"answer": 7}
    # The totals before the run came from prepare: the usage is this turn's.
    assert (second.usage["input_tokens"], second.usage["output_tokens"]) == (300, 20)
    assert second.usage["scope"] == "turn"
