"""``.sisyphus/config.toml``: a default brain and one per role, ``--brain`` over it, the
brain recorded in AGENT_SPAWNED (no secrets) and rebuilt from the record; a bad config
is one line naming the file and the field; ``doctor`` lists every backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sisyphus_tui.agents.config import BrainConfig, ConfigError, RunConfig, load_config

CONFIG = """
[brain]
backend = "claude"
model = "sonnet"
allow = ["Bash(pytest*)"]

[roles.validator]
backend = "codex"
model = "gpt-5-codex"

[roles.executor]
args = ["--max-turns", "40"]
env = { CLAUDE_CODE_MAX_OUTPUT_TOKENS = "16000", SECRET_TOKEN = "s3cret" }

[roles.researcher]
backend = "acp"
command = "opencode acp --print-logs"
"""


def write_config(workspace: Path, text: str) -> None:
    (workspace / ".sisyphus").mkdir(parents=True, exist_ok=True)
    (workspace / ".sisyphus" / "config.toml").write_text(text)


def test_each_role_gets_its_brain(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    config = load_config(tmp_path)
    planner, validator = config.for_role("planner"), config.for_role("validator")
    executor, researcher = config.for_role("executor"), config.for_role("researcher")
    assert (planner.backend, planner.model, planner.allow) == ("claude", "sonnet",
                                                                ("Bash(pytest*)",))
    # A role with a backend of its own starts afresh: no claude model for codex.
    assert (validator.backend, validator.model, validator.allow) == ("codex", "gpt-5-codex",
                                                                      ())
    # Without one, it adds to the default.
    assert (executor.backend, executor.model, executor.args) == ("claude", "sonnet",
                                                                  ("--max-turns", "40"))
    assert researcher.command == ("opencode", "acp", "--print-logs")


def test_no_config_is_the_scripted_brain(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.for_role("planner").backend == "scripted"


def test_brain_flag_puts_every_role_on_one_backend(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    on_codex = load_config(tmp_path).overridden("codex")
    # The config's settings for that backend still apply; another backend's are dropped.
    assert {on_codex.for_role(r).backend for r in ("planner", "validator", "executor",
                                                   "researcher")} == {"codex"}
    assert on_codex.for_role("validator").model == "gpt-5-codex"
    assert on_codex.for_role("planner").model is None
    assert load_config(tmp_path).overridden("claude").for_role("executor").args == (
        "--max-turns", "40")
    with pytest.raises(ConfigError, match="unknown brain 'nope'"):
        RunConfig().overridden("nope")


def test_the_record_keeps_no_secret_and_rebuilds_the_brain(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    executor = load_config(tmp_path).for_role("executor")
    record = executor.record()
    assert "s3cret" not in repr(record)
    assert record["env_names"] == ["CLAUDE_CODE_MAX_OUTPUT_TOKENS", "SECRET_TOKEN"]
    now = executor.model_copy(update={"env": {"SECRET_TOKEN": "new", "OTHER": "x"}})
    rebuilt = BrainConfig.from_record(record, now)
    assert rebuilt.model_copy(update={"env": {}}) == executor.model_copy(update={"env": {}})
    assert rebuilt.env == {"SECRET_TOKEN": "new"}  # the values as the config has them now
    # Secrets in the arguments stay out of the log too, and come back from the config.
    keyed = BrainConfig(backend="acp", command="goose acp --api-key sk-live-1",
                        args=("--token=abc", "--max-turns", "3"))
    kept = keyed.record()
    assert "sk-live-1" not in repr(kept) and "abc" not in repr(kept)
    assert kept["command"] == ["goose", "acp", "--api-key", "***"]
    assert kept["args"] == ["--token=***", "--max-turns", "3"]
    assert BrainConfig.from_record(kept, keyed) == keyed


@pytest.mark.parametrize(("text", "says"), [
    ("[brain\nbackend='claude'", "not valid TOML"),
    ("[brain]\nbackend = 'gpt'", "brain.backend: unknown brain 'gpt'"),
    ("[brain]\nmodle = 'x'", "brain.modle: Extra inputs are not permitted"),
    ("[roles.validator]\nbackend = 'nope'", "roles: validator.backend"),
    ("[brain]\ntimeout_s = -1", "brain.timeout_s"),
])
def test_a_bad_config_is_one_line_naming_the_field(tmp_path: Path, text: str,
                                                   says: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    message = str(raised.value)
    assert says in message and str(tmp_path / ".sisyphus" / "config.toml") in message
    assert "\n" not in message


def sisyphus(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sisyphus_tui", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_run_with_a_bad_config_is_refused_before_anything(tmp_path: Path) -> None:
    write_config(tmp_path, "[brain]\nbackend = 'gpt'")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    refused = sisyphus("run", "--headless", "--db", str(tmp_path / "swarm.db"),
                       "--workspace", str(tmp_path), "--goal", "do it", cwd=tmp_path,
                       env=dict(os.environ))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "unknown brain 'gpt'" in refused.stderr
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name != "swarm.db"
                  and not p.name.startswith("swarm.db")) == before


def test_doctor_lists_every_backend(tmp_path: Path, cli_bin: Path) -> None:
    write_config(tmp_path, CONFIG)
    subprocess.run([sys.executable, "-m", "sisyphus_tui", "init", "--db",
                    str(tmp_path / "swarm.db")], check=True, capture_output=True)
    env = {**os.environ, "PATH": f"{cli_bin}{os.pathsep}{os.environ['PATH']}"}
    found = sisyphus("doctor", "--db", str(tmp_path / "swarm.db"), cwd=tmp_path, env=env)
    lines = {line.split(":")[0]: line for line in found.stdout.splitlines()}
    assert found.returncode == 0, found.stderr
    assert str(cli_bin / "claude") in lines["backend claude"]
    assert "2.1.197" in lines["backend claude"]
    assert "configured for planner, executor" in lines["backend claude"]  # (not the kernel)
    assert "configured for validator" in lines["backend codex"]
    assert "0.171.0" in lines["backend codex"]
    assert "0.61.0" in lines["backend gemini"] and "1.18.33" in lines["backend opencode"]
    assert "configured for researcher" in lines["backend acp"]
    # Without the CLIs on PATH: what is missing, and where it comes from.
    bare = {**os.environ, "PATH": "/usr/bin:/bin"}
    missing = sisyphus("doctor", "--db", str(tmp_path / "swarm.db"), cwd=tmp_path, env=bare)
    assert "backend claude: not installed: no 'claude' on PATH (install " \
           "@anthropic-ai/claude-code)" in missing.stdout
    # ... and a role configured on a CLI that is not there is a problem, not health.
    assert missing.returncode == 1
    assert "problem: planner, executor would run on claude, which cannot start" in \
        missing.stdout
    assert missing.stdout.splitlines()[-1] == "2 problem(s)"


def test_doctor_needs_no_database_to_list_the_backends(tmp_path: Path, cli_bin: Path) -> None:
    env = {**os.environ, "PATH": f"{cli_bin}{os.pathsep}{os.environ['PATH']}"}
    db = tmp_path / ".sisyphus" / "swarm.db"
    found = sisyphus("doctor", "--db", str(db), cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0] == f"database: none yet at {db} (nothing to check)"
    assert any(line.startswith("backend claude: ") and "2.1.197" in line for line in lines)
    assert lines[-1] == "no problems found"
    assert not db.exists()  # a check writes nothing


def test_doctor_says_when_a_cli_is_older_than_the_tested_one(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old = bin_dir / "claude"
    old.write_text("#!/bin/sh\necho '1.0.3 (Claude Code)'\n")
    old.chmod(0o755)
    subprocess.run([sys.executable, "-m", "sisyphus_tui", "init", "--db",
                    str(tmp_path / "swarm.db")], check=True, capture_output=True)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"}
    found = sisyphus("doctor", "--db", str(tmp_path / "swarm.db"), cwd=tmp_path, env=env)
    line = next(x for x in found.stdout.splitlines() if x.startswith("backend claude:"))
    assert line == (f"backend claude: {old} (1.0.3 (Claude Code); older than the tested "
                    "2.1.197: it may lack what sisyphus uses)")


def test_a_misspelt_role_is_refused(tmp_path: Path) -> None:
    write_config(tmp_path, "[roles.exector]\nbackend = 'codex'\n")
    with pytest.raises(ConfigError, match="roles: unknown role 'exector' \\(roles: kernel, "
                                          "planner, validator, executor, researcher\\)"):
        load_config(tmp_path)


def test_a_string_where_a_list_is_meant_is_taken_as_a_user_means_it(tmp_path: Path) -> None:
    write_config(tmp_path, "[brain]\nbackend = 'claude'\nargs = \"--max-turns 4\"\n"
                           "allow = 'Bash(pytest*)'\n")
    brain = load_config(tmp_path).for_role("executor")
    assert brain.args == ("--max-turns", "4") and brain.allow == ("Bash(pytest*)",)


def test_agent_refuses_an_empty_prompt(tmp_path: Path) -> None:
    empty = sisyphus("agent", "claude", "  ", "--db", str(tmp_path / "swarm.db"),
                     "--workspace", str(tmp_path), cwd=tmp_path, env=dict(os.environ))
    assert empty.returncode == 2
    assert empty.stderr == "sisyphus: error: the prompt is empty: say what the agent " \
                           "should do\n"
    assert not (tmp_path / "swarm.db").exists()
