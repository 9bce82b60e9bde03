"""SIGKILL a process appending in a loop, many times: nothing acknowledged is lost,
the file stays sound, and a tracking transaction is never half-applied."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
from pathlib import Path

from tests.stream.processes import Child

ROUNDS = int(os.environ.get("SISYPHUS_CRASH_ROUNDS", "25"))


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    seed = int(os.environ.get("SISYPHUS_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    acknowledged_jobs: set[int] = set()
    acknowledged_done: set[int] = set()
    for round_number in range(ROUNDS):
        child = Child("crashloop", str(db))
        assert child.first_line.wait(60), "the child never started appending"
        # The kill lands at a random moment of a busy append loop.
        try:
            child.proc.wait(timeout=rng.uniform(0.001, 0.25))
        except subprocess.TimeoutExpired:  # still running, as it should be: now kill it
            pass
        lines = child.kill(signal.SIGKILL)
        assert child.proc.returncode == -signal.SIGKILL, f"seed {seed}"
        for line in lines:
            kind, _, offset = line.partition(" ")
            (acknowledged_jobs if kind == "job" else acknowledged_done).add(int(offset))
        where = f"seed {seed} round {round_number}"
        check_database(db, acknowledged_jobs, acknowledged_done, where)
    assert len(acknowledged_done) > ROUNDS, "the kills should land while jobs are handled"


def check_database(db: Path, jobs: set[int], done: set[int], where: str) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", where
        count, top = conn.execute('SELECT count(*), max("offset") FROM events').fetchone()
        assert count == top, f"offsets have a gap: {where}"
        stored_jobs = {o for (o,) in conn.execute(
            "SELECT \"offset\" FROM events WHERE type = 'x.job'")}
        assert jobs <= stored_jobs, f"an acknowledged append was lost: {where}"
        row = conn.execute("SELECT position FROM cursors WHERE agent = 'worker'").fetchone()
        cursor = row[0] if row else 0
        assert all(o <= cursor for o in done), f"an acknowledged ack was lost: {where}"
        results: dict[int, int] = dict(conn.execute(
            "SELECT json_extract(payload, '$.job'), count(*) FROM events "
            "WHERE type = 'x.result' GROUP BY 1").fetchall())
        for job in stored_jobs:
            expected = 3 if job <= cursor else 0
            assert results.get(job, 0) == expected, (
                f"job {job}: {results.get(job, 0)} results with cursor {cursor}: "
                f"a tracking transaction was half-applied or repeated ({where})")
    finally:
        conn.close()
