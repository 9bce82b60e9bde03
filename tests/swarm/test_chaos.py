"""SIGKILL the real `sisyphus demo --headless` process at random moments, many times,
then let the same command finish: the workspace is byte-identical to an uninterrupted
run's, and each plan step's effects appear once in the log."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
from pathlib import Path

from tests.swarm.conftest import (
    Reference,
    assert_each_step_once,
    assert_ledger_rebuilds,
    demo_argv,
    run_demo,
    snapshot,
)

KILLS = int(os.environ.get("SISYPHUS_CHAOS_KILLS", "10"))


def test_sigkill_the_demo_at_random_moments(tmp_path: Path, reference: Reference) -> None:
    seed = int(os.environ.get("SISYPHUS_CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    kills = 0
    finished_early = False
    for _ in range(KILLS):
        proc = subprocess.Popen(demo_argv(db, workspace), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            # Let it run a random while (start-up is ~1 s of the window), then kill -9.
            proc.wait(timeout=rng.uniform(0.2, 3.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
            kills += 1
            continue
        finally:
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.stderr.close()
        assert proc.returncode == 0, f"seed {seed}: {err}"
        finished_early = True
        break
    assert kills >= 3 or finished_early, f"seed {seed}"

    final = run_demo(db, workspace)
    assert final.returncode == 0, f"seed {seed}: {final.stdout}{final.stderr}"

    assert snapshot(workspace) == snapshot(reference.workspace), f"seed {seed}"
    assert_each_step_once(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (resumed,) = conn.execute("SELECT count(*) FROM events WHERE type = 'RESUMED'").fetchone()
    (already,) = conn.execute("SELECT count(*) FROM events WHERE type = 'FILE_EDIT' AND "
                              "json_extract(payload, '$.already_applied')").fetchone()
    (restarts,) = conn.execute("SELECT count(*) FROM events WHERE type = 'RUN_RESUMED'"
                               ).fetchone()
    conn.close()
    assert resumed >= 1 or kills == 0, f"seed {seed}: the restarts resumed the actors"
    assert restarts <= kills, f"seed {seed}: at most one record per host that came after one"
    # The ledger lists the recoveries the kills caused, as the log has them.
    ledger = assert_ledger_rebuilds(db, workspace)
    recoveries = ledger.split("## Recoveries\n", 1)[1].split("\n## ", 1)[0]
    assert recoveries.count(": resumed from checkpoint @") == resumed, f"seed {seed}"
    assert recoveries.count("after an interruption") == restarts, f"seed {seed}"
    print(f"seed {seed}: {kills} kills, {resumed} resumes, {already} edits found applied")
