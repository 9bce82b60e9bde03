"""The CLI tells the run's story, truthfully: ``events`` prints what each event says,
``agents`` who hosts the swarm and each agent's true state, steering says what it asked
for (or why nothing would carry it out), a blocked run keeps its reason's lines, and
``demo --fresh`` starts the demo over. Real ``sisyphus`` processes on real databases."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sisyphus_tui.cli import NO_HOST, WAITS_FOR_HOST, WATCH_SPEED
from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.demo.script import load_script
from sisyphus_tui.stream import open_store
from sisyphus_tui.stream.lease import HostLease
from tests.conftest import db_fingerprint, run_cli

OSC = "\x1b]0;pwned\x07"


def ok(*args: str, db: Path) -> str:
    result = run_cli(*args, db=db)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(*args: str, db: Path, message: str) -> None:
    """The command is refused in one line, exit 2, and the database is unchanged."""
    before = db_fingerprint(db) if db.exists() else None
    result = run_cli(*args, db=db)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [result.stderr.rstrip("\n")], result.stderr
    assert message in result.stderr, result.stderr
    assert result.stdout == ""
    assert (db_fingerprint(db) if db.exists() else None) == before


def until(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    """Wait for ``condition`` (checked every 50 ms) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def count(db: Path, sql: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0  # not made yet


def agents(db: Path) -> tuple[str, dict[str, list[str]]]:
    """``sisyphus agents``: its header line and its rows by agent name."""
    header, _, *rows = ok("agents", db=db).splitlines()
    return header, {row.split()[0]: row.split() for row in rows}


def shown(db: Path) -> dict[str, str]:
    return {r["agent"]: r["shown"] for r in map(json.loads,
                                                ok("agents", "--json", db=db).splitlines())}


def demo(db: Path, workspace: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sisyphus_tui", "demo", "--headless", "--db", str(db),
            "--workspace", str(workspace), *extra]


def interrupted_once(db: Path, workspace: Path, query: str, *extra: str) -> int:
    """Host the demo until the log has a row ``query`` counts, then SIGTERM the host;
    returns its exit code."""
    host = subprocess.Popen(demo(db, workspace, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: count(db, query) > 0, what=query)
        host.send_signal(signal.SIGTERM)
        host.communicate(timeout=60)
    finally:
        if host.poll() is None:
            host.kill()
            host.communicate()
    return host.returncode


# The demo's spec, but one rejected plan blocks the run (at once, before any step).
QUICK_BLOCK = load_script().spec | {"max_review_rounds": 1}


def quick_block_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(QUICK_BLOCK))
    return spec


def demo_log(db: Path, workspace: Path, *events: tuple[str, dict[str, Any]],
             spec: dict[str, Any] | None = None) -> None:
    """The demo's run started in ``db`` (no host runs it), then ``events`` by the kernel."""
    async def make() -> None:
        async with await open_store(db) as store:
            await prepare_demo(store, workspace, spec)
            for kind, payload in events:
                await store.append(kind, payload, actor="kernel")

    asyncio.run(make())


# -- events -------------------------------------------------------------------------


def test_events_print_what_each_event_says_escaped(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    review = {"plan_id": "plan-1", "verdict": "needs_changes",
              "reasons": [f"precedent #1 {OSC}[red]x[/]\n=====\nit failed"]}
    ok("emit", "REVIEW", "--payload", json.dumps(review), "--actor", "validator", db=db)
    ok("emit", "x.note", "--payload", json.dumps({"text": "café\nnoted"}), db=db)
    ok("emit", "GATE_RESULT", "--payload", json.dumps(
        {"gate": "tests", "passed": False, "exit_code": 1, "output_tail": "1 failed"}), db=db)
    ok("register", "watcher", db=db)
    ok("emit", "x.ping", "--payload", "{}", "--to", "watcher", db=db)
    lines = ok("events", db=db).splitlines()
    assert len(lines) == 5
    # Sent somewhere: it says where (a message's story says it itself).
    assert "-> watcher  x.ping {}" in lines[4], lines[4]
    assert "validator" in lines[0] and "REVIEW" in lines[0]
    # The narrative's line, not the payload's JSON; the agent's text shown, not obeyed.
    assert lines[0].endswith(
        "review of plan-1: needs_changes - precedent #1 \\x1b]0;pwned\\x07[red]x[/] … "
        "it failed")
    assert lines[1].endswith("x.note: café … noted")
    assert lines[2].endswith("gate tests: FAIL (exit 1)")
    assert not any("{" in line for line in lines[:4])  # (a type with no story: its JSON)
    raw = [json.loads(line) for line in ok("events", "--json", db=db).splitlines()]
    assert raw[0]["payload"] | review == raw[0]["payload"]
    assert raw[1]["payload"] == {"text": "café\nnoted"}


# -- a blocked run ------------------------------------------------------------------


def test_a_blocked_reason_keeps_its_lines_and_escapes_the_rest(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    reason = ("step 2 failed: tests fail\n=====\nE   assert 1 == 2 \x1b[31m[red]x[/]\n\n"
              "1 failed, 3 passed in 0.21s\n")
    demo_log(db, workspace, ("PHASE", {"phase": "blocked", "reason": reason}))
    result = subprocess.run(demo(db, workspace), capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        "sisyphus: blocked: step 2 failed: tests fail", "=====",
        "E   assert 1 == 2 \\x1b[31m[red]x[/]", "", "1 failed, 3 passed in 0.21s"]


# -- agents and steering --------------------------------------------------------------


def test_steering_says_what_waits_for_a_host_and_refuses_what_nothing_will_do(
        tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    demo_log(db, workspace, spec=QUICK_BLOCK)
    header, rows = agents(db)
    assert header == NO_HOST
    assert rows["kernel"][:4] == ["kernel", "kernel", "no", "host"]
    refused("resume", "kernel", db=db, message="kernel is not wiped")

    head = count(db, 'SELECT max("offset") FROM events')
    assert ok("pause", db=db).splitlines() == [f"pause requested (event {head + 1})",
                                               WAITS_FOR_HOST]
    assert count(db, f"SELECT count(*) FROM events WHERE \"offset\" = {head + 1} AND "
                     "type = 'CONTROL' AND json_extract(payload, '$.action') = 'pause'") == 1

    host = subprocess.Popen(demo(db, workspace), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # It starts paused (the request waited for it): the kernel says so.
        until(lambda: shown(db).get("kernel") == "paused", what="the kernel paused")
        header, rows = agents(db)
        assert header.startswith(f"host: pid {host.pid} on ")
        unpause = ok("unpause", db=db).splitlines()
        assert len(unpause) == 1 and unpause[0].startswith("unpause requested (event ")
        _, err = host.communicate(timeout=120)
    finally:
        if host.poll() is None:
            host.kill()
            host.communicate()
    assert host.returncode == 3, err
    assert err.startswith("sisyphus: blocked: the plan was rejected 1 times")

    header, rows = agents(db)
    assert header == "no host: the run is blocked"
    for name in ("kernel", "planner", "validator"):
        assert rows[name][2] == "blocked", rows[name]
    refused("wipe", "planner", db=db, message="the run is blocked: nothing will carry out")
    refused("spawn", "researcher", "r1", "find SQL", "--background", db=db,
            message="the run is blocked: nothing will carry out")
    refused("pause", db=db, message="the run is blocked: nothing will carry out")


def test_after_the_host_quits_no_agent_reads_idle(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    reviewed = "SELECT count(*) FROM events WHERE type = 'REVIEW'"
    assert interrupted_once(db, workspace, reviewed, "--speed", "0.2") == 128 + signal.SIGTERM
    header, rows = agents(db)
    assert header == NO_HOST
    states = {name: " ".join(row[2:4]) for name, row in rows.items()}
    assert states["planner"] == "no host" and states["validator"] == "no host", states
    assert not any(row[2] in ("idle", "working", "waiting") for row in rows.values()), rows
    out = ok("wipe", "planner", db=db).splitlines()
    assert out[0].startswith("wipe planner requested (event ") and out[1] == WAITS_FOR_HOST


# -- demo --fresh --------------------------------------------------------------------


def test_fresh_starts_the_demo_over_saying_what_it_removes(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    spec = quick_block_spec(tmp_path)
    first = subprocess.run(demo(db, workspace, "--spec", str(spec)), capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 3, first.stderr
    (workspace / "left-over.txt").write_text("from the first run")
    started = time.time()
    again = subprocess.run(demo(db, workspace, "--spec", str(spec), "--fresh"),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 3, again.stderr
    said = again.stderr.splitlines()[0]
    assert said.startswith("starting the demo over: removing ")
    for path in (workspace, db):
        assert str(path) in said, said
    # The lease file is never removed (a lock on a removed file is no lock): kept, empty.
    assert f"{db}-host" not in said
    assert not (workspace / "left-over.txt").exists()
    assert (workspace / "tools" / "check_sql.py").is_file()  # the sample, copied anew
    assert count(db, f'SELECT count(*) FROM events WHERE "offset" = 1 AND ts >= {started}') == 1


def test_fresh_is_refused_while_another_process_hosts_the_swarm(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    demo_log(db, workspace)

    async def hold_and_try() -> subprocess.CompletedProcess[str]:
        async with await HostLease.acquire(db):
            return await asyncio.to_thread(subprocess.run, demo(db, workspace, "--fresh"),
                                           capture_output=True, text=True, timeout=60)

    before = db_fingerprint(db)
    result = asyncio.run(hold_and_try())
    assert result.returncode == 2
    assert result.stderr.startswith("sisyphus: error: another sisyphus already hosts")
    assert len(result.stderr.splitlines()) == 1
    assert db_fingerprint(db) == before and (workspace / "tools" / "check_sql.py").is_file()


def test_fresh_never_removes_what_is_not_the_demos(tmp_path: Path) -> None:
    workspace = tmp_path / "mine"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("my work")
    db = tmp_path / "swarm.db"
    result = subprocess.run(demo(db, workspace, "--fresh"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"sisyphus: error: --fresh: {workspace} is not the demo's workspace (neither the "
        "folder this database's demo works in nor the untouched sample): not removing it; "
        "choose another --workspace, or remove it yourself"]
    assert (workspace / "notes.txt").read_text() == "my work" and not db.exists()

    other = tmp_path / "other.db"
    ok("emit", "TASK_INIT", "--payload", '{"goal": "my own refactor"}', db=other)
    before = db_fingerprint(other)
    result = subprocess.run(demo(other, tmp_path / "ws", "--fresh"), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "holds another run than the demo: not removing it" in result.stderr
    assert db_fingerprint(other) == before

    link = tmp_path / "link"
    link.symlink_to(workspace)
    result = subprocess.run(demo(tmp_path / "third.db", link, "--fresh"), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "not removing it" in result.stderr
    assert (workspace / "notes.txt").exists()


# -- pacing ---------------------------------------------------------------------------


def test_at_the_watch_speed_each_planning_beat_can_be_read(tmp_path: Path) -> None:
    """At the TUI's default speed the plan, its rejection by precedent, the re-plan and
    the approval are each on the screen long enough to read (they all landed within
    one second)."""
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    approved = ("SELECT count(*) FROM events WHERE type = 'REVIEW' AND "
                "json_extract(payload, '$.verdict') = 'approve'")
    interrupted_once(db, workspace, approved, "--speed", str(WATCH_SPEED))
    conn = sqlite3.connect(db)
    try:
        beats = [ts for (ts,) in conn.execute(
            "SELECT ts FROM events WHERE type IN ('PLAN_INIT', 'REVIEW') "
            'ORDER BY "offset" LIMIT 4')]
    finally:
        conn.close()
    gaps = [later - earlier for earlier, later in zip(beats, beats[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= 1.0, gaps
