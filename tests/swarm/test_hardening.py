"""The swarm attacked from outside: a second host, a write lock held past the busy
timeout, a disk filled and freed, signals, poison events; each through the real
command, against a real database file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sisyphus_tui.brains import BRAINS
from sisyphus_tui.brains.base import Thought
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.errors import HostBusy, HostFault
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store
from tests.conftest import run_cli
from tests.swarm.conftest import (
    Reference,
    assert_each_step_once,
    demo_argv,
    run_demo,
    snapshot,
)

WITHIN_S = 120.0


def wait_for(check: Callable[[], bool], what: str, within: float = WITHIN_S) -> None:
    """Poll ``check`` until it holds (a condition in another process: no event to wait on)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def count(db: Path, sql: str, *params: object) -> int:
    """One number from the log, read through a connection of our own."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute(sql, params).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0  # not created yet


def reached(db: Path, phase: str) -> bool:
    return count(db, "SELECT count(*) FROM events WHERE type = 'PHASE' AND "
                     "json_extract(payload, '$.phase') = ?", phase) > 0


def started(argv: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | env)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; killed if the test fails half way."""
    running: list[subprocess.Popen[str]] = []
    yield running
    for proc in running:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def watched_demo(db: Path, workspace: Path, procs: list[subprocess.Popen[str]], phase: str,
                 **env: str) -> subprocess.Popen[str]:
    """A headless demo paced so an attack lands mid-run, once its log reached ``phase``."""
    host = started(demo_argv(db, workspace, "--speed", "0.05"), **env)
    procs.append(host)
    wait_for(lambda: reached(db, phase), f"the run to reach {phase}")
    return host


# -- 1. one host per swarm ----------------------------------------------------------


def test_a_second_host_is_refused_and_viewers_are_not(
        tmp_path: Path, reference: Reference, procs: list[subprocess.Popen[str]]) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    first = watched_demo(db, workspace, procs, "plan")
    for argv in (demo_argv(db, workspace),
                 [sys.executable, "-m", "sisyphus_tui", "run", "--headless", "--db", str(db)]):
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr  # one line
        assert f"already hosts this swarm: pid {first.pid} on " in second.stderr
        assert " since 20" in second.stderr
    # Viewers and the CLI are not hosts: they work while it runs.
    assert run_cli("agents", db=db).returncode == 0
    assert run_cli("events", "--limit", "3", db=db).returncode == 0
    doctor = run_cli("doctor", db=db)
    assert f"host: pid {first.pid} on " in doctor.stdout, doctor.stdout
    out, err = first.communicate(timeout=WITHIN_S)
    assert first.returncode == 0, err
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)
    assert "host: none" in run_cli("doctor", db=db).stdout


def test_two_hosts_started_at_the_same_instant_make_one_run(
        tmp_path: Path, reference: Reference, procs: list[subprocess.Popen[str]]) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    hosts = [started(demo_argv(db, workspace)) for _ in range(2)]
    procs.extend(hosts)
    results = [(h.wait(WITHIN_S), h.communicate()[1]) for h in hosts]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "already hosts this swarm" in refused and "Traceback" not in refused
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)


async def test_a_host_in_this_process_takes_the_lease_too(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        lease = await store.host_lease()
        try:
            with pytest.raises(HostBusy, match=f"already hosts this swarm: pid {os.getpid()}"):
                await Swarm(store, workspace).run()
        finally:
            lease.release()
        assert store.current_host() is None
        ledger = await Swarm(store, workspace).run()
        assert ledger.phase == "done"


# -- 2 and 3. faults that pass ------------------------------------------------------


def hold_write_lock(db: Path, seconds: float) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)  # the attack: the lock is held this long
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_write_lock_held_past_the_busy_timeout_is_retried(
        tmp_path: Path, reference: Reference, procs: list[subprocess.Popen[str]]) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    # A 0.5 s busy timeout and a 3 s hold: the same attack as 5 s and 7 s, quicker.
    host = watched_demo(db, workspace, procs, "execute", SISYPHUS_BUSY_TIMEOUT_MS="500")
    hold_write_lock(db, 3.0)
    out, err = host.communicate(timeout=WITHIN_S)
    assert host.returncode == 0, err
    assert "database is locked" in err and "retry" in err and "committed after" in err, err
    assert count(db, "SELECT count(*) FROM events WHERE type = 'AGENT_FAILED'") == 0
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)
    # And again on the same log: a finished run stays finished, it is not blocked.
    assert run_demo(db, workspace).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of our own, to fill."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a tmpfs of our own: mounting one needs root")
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def fill(root: Path) -> Path:
    filler = root / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_disk_filled_and_freed_under_a_running_swarm(
        small_disk: Path, reference: Reference, procs: list[subprocess.Popen[str]]) -> None:
    db, workspace = small_disk / "swarm.db", small_disk / "ws"
    host = watched_demo(db, workspace, procs, "execute")
    filler = fill(small_disk)
    time.sleep(3)  # the attack: the disk stays full this long
    filler.unlink()
    out, err = host.communicate(timeout=WITHIN_S)
    assert host.returncode == 0, err
    assert "No space left on device" in err or "disk full" in err, err
    assert count(db, "SELECT count(*) FROM events WHERE type = 'AGENT_FAILED'") == 0
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)


class FailingOnceBrain(ScriptedBrain):
    """The scripted brain, but the first green of step 2 raises (a bug, not a fault)."""

    failed = False

    async def think(self, thought: Thought) -> dict[str, object]:
        if thought.purpose == "green" and thought.data.get("step") == 2 and \
                not FailingOnceBrain.failed:
            FailingOnceBrain.failed = True
            raise RuntimeError("the brain tripped")
        return await super().think(thought)


async def test_a_failed_agent_stops_the_host_loudly_and_the_next_host_resumes(
        tmp_path: Path, reference: Reference) -> None:
    BRAINS["failing-once"] = FailingOnceBrain
    FailingOnceBrain.failed = False
    try:
        db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
        async with await open_store(db) as store:
            await prepare_demo(store, workspace)
            with pytest.raises(HostFault, match="executor failed: RuntimeError: the brain"):
                await Swarm(store, workspace, brain="failing-once").run()
            assert store.current_host() is None  # the lease went with the host
            ledger = await Swarm(store, workspace, brain="failing-once").run()
    finally:
        del BRAINS["failing-once"]
    assert ledger.phase == "done"
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)


# -- 9 and 10. signals and exit codes -------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])
@pytest.mark.parametrize("command", ["demo", "run"])
def test_a_signal_ends_a_host_cleanly_with_its_code(
        tmp_path: Path, procs: list[subprocess.Popen[str]], signum: int, code: int,
        command: str) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    argv = demo_argv(db, workspace, "--speed", "0.05")
    if command == "run":  # the demo's run, hosted by `run --headless`
        asyncio.run(_prepare(db, workspace))
        argv = [sys.executable, "-m", "sisyphus_tui", "run", "--headless", "--db", str(db),
                "--speed", "0.05"]
    host = started(argv)
    procs.append(host)
    wait_for(lambda: reached(db, "execute") or host.poll() is not None, "phase execute")
    assert host.poll() is None, host.communicate()
    host.send_signal(signum)
    out, err = host.communicate(timeout=15)
    assert host.returncode == code, err
    assert "Traceback" not in err
    assert "run the same command to resume" in err and "stopped at offset" in err, err
    final = run_demo(db, workspace)
    assert final.returncode == 0, final.stderr
    assert_each_step_once(db)


async def _prepare(db: Path, workspace: Path) -> None:
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)


def test_a_run_an_older_version_blocked_on_a_fault_is_resumed(
        tmp_path: Path, reference: Reference, procs: list[subprocess.Popen[str]]) -> None:
    """Before faults were retried, a lock held past the busy timeout failed the executor
    and the kernel blocked the run, for ever. A new host sees the block was a fault and
    lifts it: the run goes on from where it was, each step done once."""
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    host = started(demo_argv(db, workspace, "--speed", "0.05"))
    procs.append(host)
    wait_for(lambda: count(db, "SELECT count(*) FROM events WHERE type = 'TEST_PASS'") >= 1,
             "the first step to pass")
    host.send_signal(signal.SIGKILL)
    host.communicate(timeout=30)
    error = f"DatabaseLocked: database is locked by another process: {db}"
    conn = sqlite3.connect(db)
    conn.executemany('INSERT INTO events (type, actor, payload, ts) VALUES (?, ?, ?, ?)', [
        ("AGENT_FAILED", "swarm", json.dumps({"agent": "executor", "error": error}), time.time()),
        ("PHASE", "kernel", json.dumps({"phase": "blocked",
                                        "reason": f"agent executor failed: {error}"}),
         time.time()),
    ])
    conn.commit()
    conn.close()
    final = run_demo(db, workspace)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "the run was blocked by a fault" in final.stdout
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)


def test_a_forged_message_an_agent_fails_on_twice_is_set_aside(
        tmp_path: Path, reference: Reference, procs: list[subprocess.Popen[str]]) -> None:
    """A valid-looking message that makes an agent fail (a step that is not a number,
    "from the kernel") stops the host once (exit 4); the next host's agent fails on it
    again, sets it aside and tells the kernel, which goes on: the run is not bricked."""
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    host = watched_demo(db, workspace, procs, "execute")
    forged = run_cli("emit", "MESSAGE", "--actor", "kernel", "--to", "executor", "--payload",
                     '{"kind": "execute_step", "text": "x", "data": {"step": "x"}}', db=db)
    assert forged.returncode == 0, forged.stderr
    out, err = host.communicate(timeout=WITHIN_S)
    assert host.returncode == 4, err
    assert "executor failed: ValueError" in err and "run the same command to resume" in err
    final = run_demo(db, workspace)
    assert final.returncode == 0, final.stdout + final.stderr
    assert f"refused message {forged.stdout.strip()} from kernel" in final.stderr
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)


class AlwaysFailingBrain(ScriptedBrain):
    """The scripted brain with a bug that never passes: step 2's green always raises."""

    async def think(self, thought: Thought) -> dict[str, object]:
        if thought.purpose == "green" and thought.data.get("step") == 2:
            raise RuntimeError("the brain always trips here")
        return await super().think(thought)


async def test_a_message_the_run_needs_failing_twice_blocks_the_run_saying_why(
        tmp_path: Path) -> None:
    BRAINS["always-failing"] = AlwaysFailingBrain
    try:
        db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
        async with await open_store(db) as store:
            await prepare_demo(store, workspace)
            with pytest.raises(HostFault, match="executor failed: RuntimeError"):
                await Swarm(store, workspace, brain="always-failing").run()
            ledger = await Swarm(store, workspace, brain="always-failing").run()
    finally:
        del BRAINS["always-failing"]
    assert ledger.phase == "blocked"
    assert ledger.phase_reason.startswith("executor could not handle message ")
    assert "(green) twice: RuntimeError: the brain always trips here" in ledger.phase_reason
