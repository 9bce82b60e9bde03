"""The real ``sisyphus`` command in subprocesses: the happy paths, --follow across
processes, and every bad input: one line on stderr, exit 2, the database unchanged."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import db_fingerprint, run_cli

COMMANDS = ["init", "register", "emit", "events", "send", "inbox", "ack", "cursors"]


def ok(*args: str, db: Path, **kwargs: object) -> str:
    result = run_cli(*args, db=db, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with one registered agent and a few events."""
    path = tmp_path / "swarm.db"
    ok("register", "executor", "--role", "executor", db=path)
    ok("emit", "TASK_INIT", "--payload", '{"goal": "refactor the data layer"}',
       "--actor", "kernel", db=path)
    ok("send", "--to", "executor", "--from", "kernel", "write the failing test", db=path)
    return path


def test_every_command_has_help() -> None:
    for command in COMMANDS:
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert "--db" in result.stdout, command


def test_main_help_and_module_entry() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    console = shutil.which("sisyphus", path=str(Path(sys.executable).parent))
    assert console is not None, "the console script is installed"
    assert subprocess.run([console, "--version"], capture_output=True, text=True).stdout.startswith(
        "sisyphus ")


def test_emit_events_and_json(db: Path) -> None:
    assert ok("emit", "x.tool", "--payload", '{"n": 1}', "--key", "once", db=db).strip() == "4"
    assert ok("emit", "x.tool", "--payload", '{"n": 2}', "--key", "once", db=db).strip() == "4"
    lines = ok("events", "--json", db=db).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["offset"] for r in records] == [1, 2, 3, 4]
    assert records[1]["payload"] == {"goal": "refactor the data layer", "spec": {}}
    assert records[3] == records[3] | {"type": "x.tool", "key": "once", "payload": {"n": 1}}
    assert set(records[0]) == {"offset", "type", "actor", "to", "key", "ts", "payload"}

    human = ok("events", "--from", "2", "--limit", "2", db=db).splitlines()
    assert len(human) == 2
    assert "TASK_INIT" in human[0] and "kernel" in human[0]
    assert "to executor: note: write the failing test" in human[1]
    assert ok("events", "--type", "MESSAGE", "--json", db=db).count("\n") == 1
    assert ok("events", "--to", "executor", "--json", db=db).count("\n") == 1


def test_environment_variable_chooses_the_database(tmp_path: Path) -> None:
    path = tmp_path / "env.db"
    result = run_cli("emit", "x.n", env={"SISYPHUS_DB": str(path)})
    assert result.returncode == 0 and result.stdout.strip() == "1"
    assert path.exists()
    default = run_cli("emit", "x.n", cwd=tmp_path, env={"SISYPHUS_DB": ""})
    assert default.returncode == 0
    assert (tmp_path / ".sisyphus" / "swarm.db").exists()


def test_inbox_ack_and_cursors(db: Path) -> None:
    ok("send", "--to", "executor", "second", db=db)
    pending = ok("inbox", "executor", "--json", db=db).splitlines()
    assert [json.loads(x)["payload"]["text"] for x in pending] == [
        "write the failing test", "second"]
    first = json.loads(pending[0])["offset"]
    assert ok("ack", "executor", str(first), db=db).strip() == str(first)

    pending = ok("inbox", "executor", db=db).splitlines()
    assert len(pending) == 1 and "second" in pending[0]
    everything = ok("inbox", "executor", "--all", db=db)
    assert f"cursor {first}: acked above, pending below" in everything

    rows = [json.loads(x) for x in ok("cursors", "--json", db=db).splitlines()]
    assert rows == [{"agent": "executor", "role": "executor", "cursor": first, "lag": 4 - first}]
    assert "executor" in ok("cursors", db=db)


def test_follow_prints_events_from_another_process(db: Path) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "sisyphus_tui", "events", "--follow", "--json",
         "--from", "4", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ok("emit", "x.live", "--payload", '{"n": 1}', db=db)
        assert follower.stdout is not None
        line = _readline_within(follower.stdout, 30)
        assert json.loads(line)["payload"] == {"n": 1}
        ok("send", "--to", "executor", "and another", db=db)
        assert json.loads(_readline_within(follower.stdout, 30))["type"] == "MESSAGE"
    finally:
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
    assert follower.returncode == 0
    assert "Traceback" not in err


def _readline_within(stream: object, seconds: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()))  # type: ignore[attr-defined]
    reader.start()
    reader.join(seconds)
    assert result and result[0], "no line arrived in time"
    return result[0]


def test_hostile_agent_text_is_printed_literally(db: Path) -> None:
    hostile = "\x1b[2J\x1b]0;pwned\x07[bold red]boom[/] \x9b31m\x01"
    ok("send", "--to", "executor", hostile, db=db)
    out = ok("events", db=db)
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\x01" not in out
    assert "\\x1b[2J\\x1b]0;pwned\\x07[bold red]boom[/] \\x9b31m\\x01" in out
    # --json is ASCII: every control character is a JSON escape.
    raw = ok("events", "--json", "--type", "MESSAGE", db=db)
    assert all(ch.isprintable() or ch == "\n" for ch in raw)
    assert json.loads(raw.splitlines()[-1])["payload"]["text"] == hostile


# -- bad input --------------------------------------------------------------------


def assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sisyphus: error: ")
    assert message in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["emit", "TASK_INIT", "--payload", "{goal: 1}"], "malformed JSON in --payload"),
        (["emit", "TASK_INIT", "--payload", '{"goal": ""}'],
         "invalid TASK_INIT payload: goal: String should have at least 1 character"),
        (["emit", "TASK_INIT", "--payload", "[1]"], "must be a JSON object"),
        (["emit", "PLAN_STEP", "--payload", '{"plan_id": "p", "title": "t"}'],
         "invalid PLAN_STEP payload: step: Field required"),
        (["emit", "NOT_A_TYPE"], "unknown event type 'NOT_A_TYPE'"),
        (["emit", "x.n", "--to", "ghost"], "unknown agent 'ghost'"),
        (["send", "--to", "ghost", "hello"], "unknown agent 'ghost'"),
        (["inbox", "ghost"], "unknown agent 'ghost'"),
        (["ack", "ghost", "1"], "unknown agent 'ghost'"),
        (["ack", "executor", "999"], "the log ends at 3"),
        (["register", "bad name"], "invalid agent name 'bad name'"),
    ],
)
def test_bad_input_is_one_line_exit_two_and_writes_nothing(
    db: Path, args: list[str], message: str
) -> None:
    before = db_fingerprint(db)
    assert_refused(run_cli(*args, db=db), message)
    assert db_fingerprint(db) == before


@pytest.mark.parametrize("command", [["events"], ["send", "--to", "a", "x"], ["inbox", "a"],
                                     ["cursors"], ["ack", "a", "1"]])
def test_a_missing_database_is_reported_not_created(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "missing" / "swarm.db"
    assert_refused(run_cli(*command, db=path), f"database not found: {path}")
    assert not path.parent.exists()


def test_a_newer_schema_is_refused_untouched(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 42")
    conn.close()
    before = db_fingerprint(db)
    for args in (["events"], ["emit", "x.n"], ["send", "--to", "executor", "hi"]):
        assert_refused(run_cli(*args, db=db), "schema version 42 is newer")
    assert db_fingerprint(db) == before


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just text\n" * 500)
    before = path.read_bytes()
    assert_refused(run_cli("emit", "x.n", db=path), "not a sisyphus database")
    assert path.read_bytes() == before


def test_a_locked_database(db: Path) -> None:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        before = db_fingerprint(db)
        result = run_cli("emit", "x.n", db=db, env={"SISYPHUS_BUSY_TIMEOUT_MS": "200"})
        assert_refused(result, "database is locked by another process")
        assert db_fingerprint(db) == before
        assert run_cli("events", db=db).returncode == 0, "readers are not blocked"
    finally:
        holder.close()


def test_a_read_only_database_by_mode(db: Path) -> None:
    db.chmod(0o444)
    before = db_fingerprint(db)
    for args in (["emit", "x.n"], ["send", "--to", "executor", "hi"], ["ack", "executor", "1"]):
        assert_refused(run_cli(*args, db=db), "database is read-only")
    assert run_cli("events", db=db).stdout.count("\n") == 3
    assert db_fingerprint(db) == before


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sisyphus-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def cli_as_nobody(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI's main in a forked child that became 'nobody' (uid 65534, no groups).

    Forked rather than exec'd: the checkout, its .venv or the interpreter may sit in a
    folder 'nobody' cannot read (a 0700 home, a mktemp -d), and the child must load nothing
    after the switch, so where they are never matters: the caller has run the same code
    path in this process first (the modules it imports lazily are then loaded).
    """
    from sisyphus_tui.cli import main

    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout = open(1, "w", closefd=False)  # flushed below
            sys.stderr = open(2, "w", closefd=False)
            os.chdir(cwd)
            os.environ["HOME"] = str(cwd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = main(args)
        except BaseException:  # whatever it is, the parent must hear of it
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + 60
    while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the CLI as nobody did not finish in 60 s: {args}")
        time.sleep(0.02)
    out.seek(0)
    err.seek(0)
    return subprocess.CompletedProcess(args, os.waitstatus_to_exitcode(status[1]),
                                       out.read().decode(), err.read().decode())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the CLI as another user")
def test_a_database_another_user_cannot_write(db: Path, world_readable_dir: Path) -> None:
    """As root the mode bits are advisory: run the CLI as 'nobody' for a real EACCES."""
    from sisyphus_tui.cli import main

    path = world_readable_dir / "swarm.db"
    shutil.copy(db, path)
    path.chmod(0o644)
    before = db_fingerprint(path)
    # The same refusal as root, here, on a copy 'nobody' owns: it loads every module the
    # refusal needs before the child drops its right to read them.
    theirs = world_readable_dir / "theirs" / "swarm.db"
    theirs.parent.mkdir()
    shutil.copy(db, theirs)
    os.chown(theirs, 65534, 65534)
    with contextlib.redirect_stderr(io.StringIO()) as said:
        assert main(["emit", "x.n", "--db", str(theirs)]) == 2
    assert f"database {theirs} is owned by uid 65534, not you" in said.getvalue()
    shutil.rmtree(theirs.parent)
    files = sorted(os.listdir(world_readable_dir))
    result = cli_as_nobody(["emit", "x.n", "--db", str(path)], world_readable_dir)
    assert_refused(result, f"database {path} is owned by uid 0, not you")
    assert db_fingerprint(path) == before
    assert sorted(os.listdir(world_readable_dir)) == files


def test_a_planted_database_link_is_refused_not_followed(tmp_path: Path) -> None:
    """Someone else's 0666 file behind ``shared/swarm.db`` never receives our log."""
    theirs = tmp_path / "their-home" / "collected.db"
    theirs.parent.mkdir()
    theirs.touch(mode=0o666)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    link = shared / "swarm.db"
    link.symlink_to(theirs)
    for args in (["init"], ["emit", "x.n"], ["events"]):
        assert_refused(run_cli(*args, db=link), f"database path is a symbolic link: {link}")
    assert theirs.read_bytes() == b""
    assert os.listdir(shared) == ["swarm.db"]


def test_reading_an_empty_file_says_so_and_leaves_it_alone(tmp_path: Path) -> None:
    empty = tmp_path / "swarm.db"
    empty.touch()
    empty.chmod(0o644)
    for args in (["events"], ["agents"], ["ledger"], ["inbox", "a"], ["cursors"]):
        assert_refused(run_cli(*args, db=empty),
                       f"database is empty (not initialised; run `sisyphus init`): {empty}")
    assert empty.read_bytes() == b""
    assert stat.S_IMODE(empty.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["swarm.db"]
    ok("init", db=empty)
    assert stat.S_IMODE(empty.stat().st_mode) == 0o600


def test_the_tui_needs_a_terminal(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    assert run_cli("init", db=db).returncode == 0
    result = run_cli("tui", db=db, stdin=subprocess.DEVNULL)
    assert_refused(result, "the TUI needs a terminal")
    missing = run_cli("tui", db=tmp_path / "none.db")
    assert missing.returncode == 2
