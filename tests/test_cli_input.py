"""Hostile input to the real ``sisyphus`` command: argv bytes that are not UTF-8,
payloads beyond the log's limits, numbers beyond SQLite's, payloads too large for argv.
Each is refused with one line on stderr and exit 2, and the database is unchanged."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import db_fingerprint, run_cli
from tests.test_cli import assert_refused, ok


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with one registered agent and one event."""
    path = tmp_path / "swarm.db"
    ok("register", "kernel", "--role", "planner", db=path)
    ok("emit", "x.first", db=path)
    return path


def refused(db: Path, args: list[str], message: str, **kwargs: object) -> None:
    before = db_fingerprint(db)
    assert_refused(run_cli(*args, db=db, **kwargs), message)  # type: ignore[arg-type]
    assert db_fingerprint(db) == before


def argv(raw: bytes) -> str:
    """An argument as the process receives raw bytes (the subprocess passes them back)."""
    return os.fsdecode(raw)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "--to", "kernel", argv(b"bad \xff byte")],
         "argument text: not valid UTF-8 (byte 0xff at index 4)"),
        (["emit", argv(b"x.\xff")], "argument type: not valid UTF-8 (byte 0xff at index 2)"),
        (["emit", "x.n", "--actor", argv(b"\xfe")], "argument --actor: not valid UTF-8"),
        (["emit", "x.n", "--key", argv(b"caf\xe9")], "argument --key: not valid UTF-8"),
        (["events", "--actor", argv(b"\xfe")], "argument --actor: not valid UTF-8"),
        (["emit", "x.n", "--payload", argv(b'{"t": "\xff"}')],
         "argument --payload: not valid UTF-8"),
    ],
)
def test_argv_that_is_not_utf8_is_refused(db: Path, args: list[str], message: str) -> None:
    refused(db, args, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["emit", "x.deep", "--payload", "[" * 60_000 + "]" * 60_000],
         "--payload is nested deeper than 64 levels"),
        (["emit", "x.deep", "--payload", '{"a":' * 65 + "1" + "}" * 65],
         "invalid x.deep payload: a.a.a.a...a.a: nested deeper than 64 levels"),
        (["emit", "x.big", "--payload", '{"n": ' + "9" * 5000 + "}"],
         "--payload has an integer out of range (payload integers are 64-bit)"),
        (["emit", "x.big", "--payload", '{"n": 1180591620717411303424}'],
         "invalid x.big payload: n: integer out of range"),
        (["emit", "x.sur", "--payload", '{"text": "lone \\ud800 here"}'],
         "invalid x.sur payload: text: lone surrogate '\\ud800' at index 5"),
        (["emit", "x.sur", "--payload", '{"nested": {"caf\\udce9": 1}}'],
         "invalid x.sur payload: nested: key 'caf\\udce9': lone surrogate"),
        (["emit", "MESSAGE", "--payload", '{"text": "lone \\udc00"}', "--to", "kernel"],
         "invalid MESSAGE payload: text: lone surrogate '\\udc00'"),
        (["emit", "MESSAGE", "--payload", '{"data": {"f": NaN}}'],
         "invalid MESSAGE payload: data.f: nan is not a JSON number"),
    ],
)
def test_payloads_beyond_the_limits_are_refused(db: Path, args: list[str], message: str) -> None:
    refused(db, args, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "--from", "1180591620717411303424"],
         "argument --from: must be from 0 to 9223372036854775807"),
        (["events", "--limit", str(2**63)], "argument --limit: must be from 0"),
        (["ack", "kernel", str(2**63)], "argument offset: must be from 0 to"),
        (["ack", "kernel", "-1"], "argument offset: must be from 0 to"),
    ],
)
def test_offsets_are_bounded_to_sqlite_integers(db: Path, args: list[str], message: str) -> None:
    refused(db, args, message)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "1e999", "soon"])
@pytest.mark.parametrize("option", ["--stale-after", "--speed"])
def test_durations_must_be_finite_and_not_negative(db: Path, option: str, value: str) -> None:
    # `run` on a database without a task would stop at once: the option is refused first.
    refused(db, ["run", "--headless", f"{option}={value}"], f"argument {option}: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "--bogus"], "unrecognized arguments: --bogus"),
        (["emit"], "the following arguments are required: type"),
        (["send", "hello"], "the following arguments are required: --to"),
        (["events", "--from", "ten"], "argument --from: not a whole number: 'ten'"),
        (["nothing"], "invalid choice: 'nothing'"),
        (["spawn", "s", "n", "p", "--thinking", "hard"], "argument --thinking: invalid choice"),
    ],
)
def test_usage_errors_are_one_line(db: Path, args: list[str], message: str) -> None:
    refused(db, args, message)


def test_a_payload_too_large_for_argv_comes_from_a_file_or_stdin(
    db: Path, tmp_path: Path
) -> None:
    text = "y" * 200_000  # beyond the 128 KiB a single argument may have
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"text": text}))
    offset = ok("emit", "x.big", "--payload", f"@{payload}", db=db).strip()
    unicode = {"n": "caf\u00e9 \U0001f600"}
    piped = ok("emit", "x.big", "--payload", "-", db=db, input=json.dumps(unicode)).strip()
    records = [json.loads(line) for line in ok("events", "--json", "--from", offset,
                                                db=db).splitlines()]
    assert [r["offset"] for r in records] == [int(offset), int(piped)]
    assert records[0]["payload"] == {"text": text} and records[1]["payload"] == unicode


def test_a_payload_file_that_cannot_be_read_is_refused(db: Path, tmp_path: Path) -> None:
    refused(db, ["emit", "x.n", "--payload", f"@{tmp_path / 'missing.json'}"],
            "missing.json: No such file or directory")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"t": "caf\xe9"}')
    refused(db, ["emit", "x.n", "--payload", f"@{latin1}"],
            f"--payload @{latin1}: not valid UTF-8 (byte 0xe9 at position 10)")
    refused(db, ["emit", "x.n", "--payload", "-"], "malformed JSON in --payload",
            input="not json")


def test_help_states_the_limits() -> None:
    result = run_cli("emit", "--help")
    assert result.returncode == 0
    assert "@FILE" in result.stdout and "64 levels" in " ".join(result.stdout.split())


def _insert_raw(db: Path, type_: str, actor: str, payload: str, ts: float) -> None:
    """A row as another host (or an older sisyphus) wrote it."""
    with sqlite3.connect(db) as conn:
        conn.execute('INSERT INTO events (type, actor, "to", payload, ts, key) '
                     "VALUES (?, ?, NULL, ?, ?, NULL)", (type_, actor, payload, ts))
    conn.close()


def test_agents_from_a_host_whose_clock_is_ahead_are_active_now(db: Path) -> None:
    _insert_raw(db, "x.note", "kernel", "{}", time.time() + 86_400)
    human = ok("agents", db=db)
    assert "-86" not in human and "0s ago" in human
    (row,) = [json.loads(line) for line in ok("agents", "--json", db=db).splitlines()]
    assert row["agent"] == "kernel" and row["last_active_s"] == 0.0


def test_a_lone_surrogate_stored_by_an_older_version_is_printed_escaped(db: Path) -> None:
    _insert_raw(db, "x.sur", "kernel", '{"text": "lone \\ud800 here"}', time.time())
    result = run_cli("events", db=db)
    assert result.returncode == 0, result.stderr
    assert "lone \\ud800 here" in result.stdout.splitlines()[-1]
    assert "Traceback" not in result.stderr

