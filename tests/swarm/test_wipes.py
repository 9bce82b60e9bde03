"""Context wipes at every step boundary: every role loses its memory, resumes from its
checkpoint, and the run finishes exactly as an uninterrupted one does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.swarm.conftest import (
    Reference,
    assert_each_step_once,
    assert_ledger_rebuilds,
    snapshot,
)
from tests.swarm.inprocess import run_swarm

ROLES = ("kernel", "planner", "validator", "executor", "researcher")
BOUNDARIES = ("plan", "validate", "1", "2", "3", "4", "gates")


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_every_role_wiped_at_a_boundary(boundary: str, tmp_path: Path,
                                              reference: Reference) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    ledger = await run_swarm(db, workspace, wipes=tuple(f"{r}@{boundary}" for r in ROLES))
    assert ledger.phase == "done", ledger.phase_reason
    conn = sqlite3.connect(db)
    wiped = {a for (a,) in conn.execute(
        "SELECT json_extract(payload, '$.agent') FROM events WHERE type = 'CONTEXT_WIPED'")}
    resumed = {a for (a,) in conn.execute(
        "SELECT json_extract(payload, '$.agent') FROM events WHERE type = 'RESUMED'")}
    failed = conn.execute("SELECT count(*) FROM events WHERE type = 'AGENT_FAILED'").fetchone()
    conn.close()
    assert wiped == set(ROLES)
    assert resumed == set(ROLES)
    assert failed == (0,)
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)


async def test_the_executor_wiped_at_every_step(tmp_path: Path, reference: Reference) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    ledger = await run_swarm(db, workspace, wipes=tuple(f"executor@{n}" for n in "1234"))
    assert ledger.phase == "done"
    conn = sqlite3.connect(db)
    (wipes,) = conn.execute("SELECT count(*) FROM events WHERE type = 'CONTEXT_WIPED'").fetchone()
    reread = conn.execute("SELECT json_extract(payload, '$.reread') FROM events "
                          "WHERE type = 'RESUMED'").fetchall()
    conn.close()
    assert wipes == 4 and len(reread) == 4
    assert_each_step_once(db)
    assert snapshot(workspace) == snapshot(reference.workspace)
    # Each wipe and its resume, in the ledger's Recoveries, rebuilt byte for byte.
    ledger = assert_ledger_rebuilds(db, workspace)
    assert ledger.count("executor: context wiped, requested by swarm") == 4
    assert ledger.count("executor: resumed from checkpoint @") == 4
    assert "after an interruption" not in ledger  # one host: no restart
