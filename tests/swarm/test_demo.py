"""The demo end to end through the real command: plan, review (a rejection, then an
approval), TDD execution with real pytest runs, gates, the ledger, memory-lane."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from sisyphus_tui.demo.script import load_script
from tests.conftest import run_cli
from tests.swarm.conftest import Reference, assert_each_step_once, run_demo, snapshot


def test_the_demo_refactors_the_sample_to_done(reference: Reference) -> None:
    out = reference.result.stdout
    assert "validator: review of plan-1: needs_changes" in out
    assert "review of plan-2: approve" in out
    assert "gate no-string-sql: FAIL" in out and "gate no-string-sql: pass" in out
    assert out.rstrip().splitlines()[-1].split(" ", 1)[1].startswith("done: 4/4 steps")

    script = load_script()
    for step in script.approved_plan.steps:
        for path, content in step.green.items():
            if not any(path in later.green for later in script.approved_plan.steps
                       if later.number > step.number):
                assert (reference.workspace / path).read_text() == content
    for path, content in script.gate_fixes["no-string-sql"].items():
        assert (reference.workspace / path).read_text() == content
    # The refactored project really passes its own suite and the SQL check.
    for argv in (["-m", "pytest", "-q", "-p", "no:cacheprovider"], ["tools/check_sql.py"]):
        check = subprocess.run([sys.executable, "-B", *argv], cwd=reference.workspace,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    assert not list(reference.workspace.rglob("__pycache__"))


def test_each_step_took_effect_once(reference: Reference) -> None:
    assert_each_step_once(reference.db)


def test_the_ledger_rebuilds_byte_identical(reference: Reference, tmp_path: Path) -> None:
    live = (reference.workspace / "SISYPHUS_LEDGER.md").read_bytes()
    out = tmp_path / "rebuilt.md"
    assert run_cli("ledger", "--out", str(out), db=reference.db).returncode == 0
    assert out.read_bytes() == live
    assert run_cli("ledger", db=reference.db).stdout.encode() == live
    text = live.decode()
    for expected in ("**Phase:** done", "4/4 steps", "plan-1 (revision 1): needs changes",
                     "plan-2 (revision 2): approved", "| no-string-sql | pass | 0 | 2 |",
                     "- executor, step 4, at", "## Precedents used", "(orders search)"):
        assert expected in text


def test_memory_lane_learns_from_the_run(reference: Reference) -> None:
    conn = sqlite3.connect(reference.db)
    rows = conn.execute("SELECT payload FROM events WHERE type = 'MEMORY_STORED'").fetchall()
    feedback = conn.execute(
        "SELECT count(*) FROM events WHERE type = 'MEMORY_FEEDBACK'").fetchone()[0]
    conn.close()
    titles = [json.loads(p)["title"] for (p,) in rows]
    assert len(titles) == len(load_script().precedents) + 1
    assert titles[-1].startswith("Done: ")
    assert feedback == 1, "the precedent that changed the verdict is marked helpful"


def test_agents_are_listed_done(reference: Reference) -> None:
    rows = [json.loads(line) for line in
            run_cli("agents", "--json", db=reference.db).stdout.splitlines()]
    states = {r["agent"]: r["state"] for r in rows}
    assert {states[a] for a in ("kernel", "planner", "validator", "executor")} == {"done"}
    assert all(r["pending"] == 0 for r in rows if r["role"] != "human")


def test_running_again_resumes_instead_of_restarting(reference: Reference,
                                                     tmp_path: Path) -> None:
    before = snapshot(reference.workspace)
    head = sqlite3.connect(reference.db).execute('SELECT max("offset") FROM events').fetchone()
    again = run_demo(reference.db, reference.workspace)
    assert again.returncode == 0, again.stderr
    assert "resuming the demo" in again.stdout
    assert snapshot(reference.workspace) == before
    head_after = sqlite3.connect(reference.db).execute(
        'SELECT max("offset") FROM events').fetchone()
    assert head_after == head, "a finished run appends nothing when started again"


def test_another_workspace_for_the_same_run_is_refused(reference: Reference,
                                                       tmp_path: Path) -> None:
    result = run_demo(reference.db, tmp_path / "elsewhere")
    assert result.returncode == 2
    assert "this database's run works in" in result.stderr
    assert not (tmp_path / "elsewhere").exists()
