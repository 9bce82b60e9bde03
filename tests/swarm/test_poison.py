"""Events no reader can use (written by an older version, another program, or bit rot):
every reader flags them, skips them, and goes on; none of them bricks the log."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.swarm.conftest import Reference, assert_each_step_once, demo_argv
from tests.swarm.test_hardening import WITHIN_S, reached, started, wait_for

# (type, actor, to, payload as stored): what validation refuses today, stored anyway.
POISON: list[tuple[str, str | None, str | None, str | bytes]] = [
    ("TASK_INIT", "human", None, '{"goal":"g","spec":{"gates":[1]}}'),
    ("TASK_INIT", "human", None, '{"goal":"g","spec":{"gates":"abc"}}'),
    ("TASK_INIT", "human", None, '{"goal":"g","spec":{"gates":[{"name":"a","argv":5}]}}'),
    ("PLAN_STEP", "planner", None, '{"plan_id":"plan-1","step":"x","title":[1]}'),
    ("AGENT_SPAWNED", "swarm", None, '{"agent":5,"role":"executor"}'),
    ("STATUS_UPDATE", "executor", None, '{"agent":["a"],"state":"working"}'),
    ("STATUS_UPDATE", "executor", None, '{"agent":"executor","state":["working"]}'),
    ("AGENT_SPAWNED", "swarm", None, '{"agent":"zed","role":["executor"]}'),
    ("CONTROL", "human", "swarm", '{"action":"wipe","agent":["executor"]}'),
    ("CONTROL", "human", "swarm", '{xaction":"pause"}'),
    ("PHASE", "kernel", None, '{"phase":"nowhere"}'),
    ("REVIEW", "validator", None, '{"plan_id":"plan-1","verdict":"approve","reasons":[1]}'),
    ("MESSAGE", "human", "kernel", '{"kind":"step_done","text":"x","data":{"step":"x"}}'),
    # Bit rot: one '"' turned into 'x'; a payload that is not an object; not UTF-8.
    ("PHASE", "kernel", None, '{xphase":"done","reason":""}'),
    ("x.list", "tool", None, "[1, 2]"),
    ("x.bytes", "tool", None, b'{"t": "\xff\xfe"}'),
]


def plant(db: Path, rows: list[tuple[str, str | None, str | None, str | bytes]]) -> list[int]:
    """Store rows as another program would, past every check of ours."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        offsets = []
        for type_, actor, to, payload in rows:
            value = "CAST(? AS TEXT)" if isinstance(payload, bytes) else "?"
            cursor = conn.execute(
                f'INSERT INTO events (type, actor, "to", payload, ts) VALUES (?, ?, ?, {value}, ?)',
                (type_, actor, to, payload, time.time()))
            offsets.append(int(cursor.lastrowid or 0))
        conn.commit()
        return offsets
    finally:
        conn.close()


READERS = [("events",), ("events", "--json"), ("agents",), ("agents", "--json"), ("ledger",),
           ("cursors",), ("inbox", "kernel", "--all")]


def assert_readers_survive(db: Path, offsets: list[int]) -> None:
    for args in READERS:
        result = run_cli(*args, db=db)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "\x1b" not in result.stdout and "\ufffd\ufffd" not in result.stdout
    ledger = run_cli("ledger", db=db).stdout
    assert "## Skipped events" in ledger
    doctor = run_cli("doctor", db=db)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    for offset in offsets:
        assert f"event {offset} (" in doctor.stdout, (offset, doctor.stdout)


def test_poison_events_against_a_running_host_and_every_reader(
        tmp_path: Path, reference: Reference) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    host = started(demo_argv(db, workspace, "--speed", "0.05"))
    try:
        wait_for(lambda: reached(db, "execute"), "the run to reach execute")
        offsets = plant(db, POISON)
        out, err = host.communicate(timeout=WITHIN_S)
    finally:
        host.kill()
    assert host.returncode == 0, err
    assert "Traceback" not in err
    # The host said what it skipped, and refused the message it could not act on.
    assert "skipped event" in err and "refused message" in err, err
    assert_each_step_once(db)
    assert_readers_survive(db, [o for o, row in zip(offsets, POISON, strict=True)
                                if row[0] != "MESSAGE"])
    # Run again on the same log: it is done, and stays done.
    again = run_cli("demo", "--headless", "--workspace", str(workspace), db=db)
    assert again.returncode == 0, again.stderr


def test_a_byte_of_bit_rot_in_a_finished_log(tmp_path: Path, reference: Reference) -> None:
    db = tmp_path / "rotten.db"
    source = sqlite3.connect(reference.db)
    target = sqlite3.connect(db)
    source.backup(target)  # one file: nothing left in a -wal
    source.close()
    target.close()
    data = bytearray(db.read_bytes())
    at = data.index(b'{"goal":')
    data[at + 1] = ord("x")  # '"' -> 'x': the TASK_INIT's payload no longer parses
    db.write_bytes(bytes(data))
    conn = sqlite3.connect(db)
    (offset,) = conn.execute("SELECT \"offset\" FROM events WHERE payload LIKE '{xgoal%'"
                             ).fetchone()
    conn.close()
    assert_readers_survive(db, [offset])
    doctor = run_cli("doctor", db=db).stdout
    assert f"event {offset} (TASK_INIT): undecodable payload" in doctor


@pytest.mark.parametrize("payload", [
    '{"goal":"g","spec":{"gates":[1]}}', '{"goal":"g","spec":{"gates":"abc"}}',
    '{"goal":"g","spec":{"gates":[{"name":"a","argv":5}]}}'])
def test_the_cli_refuses_to_write_them(tmp_path: Path, payload: str) -> None:
    db = tmp_path / "swarm.db"
    assert run_cli("init", db=db).returncode == 0
    before = db.read_bytes()
    result = run_cli("emit", "TASK_INIT", "--payload", payload, db=db)
    assert result.returncode == 2 and result.stderr.startswith("sisyphus: error: invalid "
                                                              "TASK_INIT payload: spec.gates")
    assert db.read_bytes() == before
