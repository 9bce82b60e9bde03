"""Shared pieces of the swarm tests: a clean reference run of the real demo, workspace
snapshots, and the log checks that prove no step was done twice."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sisyphus_tui.demo.script import load_script
from tests.conftest import run_cli

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
AGENT_ROW = re.compile(r"^(\| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \| )\d+( \|)", re.M)
RECOVERIES = re.compile(r"^(## Recoveries\n\n)(?:- .*\n)+", re.M)


def demo_argv(db: Path, workspace: Path, *extra: str) -> list[str]:
    """The real command line of a headless demo run."""
    return [sys.executable, "-m", "sisyphus_tui", "demo", "--headless", "--speed", "0",
            "--db", str(db), "--workspace", str(workspace), *extra]


def run_demo(db: Path, workspace: Path, *extra: str,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the demo to its end in a subprocess."""
    return subprocess.run(demo_argv(db, workspace, *extra), capture_output=True, text=True,
                          timeout=timeout)


def normalize_ledger(text: str) -> str:
    """The ledger with its time stamps, cursor offsets and recoveries masked: an
    interrupted run logs extra events (RESUMED, CONTEXT_WIPED, RUN_RESUMED), so its
    offsets differ, and its Recoveries section lists them, by design (the ledger is a
    projection of the log). That the section is the log's own: assert_ledger_rebuilds."""
    masked = AGENT_ROW.sub(r"\1<cursor>\2", TIMESTAMP.sub("<time>", text))
    return RECOVERIES.sub(r"\1<recoveries>\n", masked)


def assert_ledger_rebuilds(db: Path, workspace: Path) -> str:
    """The live SISYPHUS_LEDGER.md is byte for byte ``sisyphus ledger`` rebuilt from
    offset 0 (the recoveries an interruption adds included); returns it."""
    live = (workspace / "SISYPHUS_LEDGER.md").read_text()
    rebuilt = run_cli("ledger", db=db)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout == live
    return live


def snapshot(workspace: Path) -> dict[str, bytes]:
    """Every file of a workspace (the ledger normalised), by relative path; the swarm's
    own folder left out (its shadow repository's commits carry the time they were made)."""
    files = {}
    for path in sorted(workspace.rglob("*")):
        if path.is_file() and path.relative_to(workspace).parts[0] != ".sisyphus":
            data = path.read_bytes()
            if path.name == "SISYPHUS_LEDGER.md":
                data = normalize_ledger(data.decode()).encode()
            files[str(path.relative_to(workspace))] = data
    return files


@dataclass
class Effects:
    """What the log says each plan step did."""

    test_fail: dict[int, int]
    test_pass: dict[int, int]
    edits: dict[tuple[int, str], int]
    types: dict[str, int]


def effects(db: Path) -> Effects:
    """Count each step's effects in the log."""
    conn = sqlite3.connect(db)
    try:
        def per_step(event_type: str) -> dict[int, int]:
            rows = conn.execute(
                "SELECT json_extract(payload, '$.step'), count(*) FROM events "
                "WHERE type = ? AND json_extract(payload, '$.step') IS NOT NULL GROUP BY 1",
                (event_type,)).fetchall()
            return {int(step): n for step, n in rows}

        edits = conn.execute(
            "SELECT json_extract(payload, '$.step'), json_extract(payload, '$.path'), count(*) "
            "FROM events WHERE type = 'FILE_EDIT' AND json_extract(payload, '$.step') "
            "IS NOT NULL GROUP BY 1, 2").fetchall()
        types = dict(conn.execute("SELECT type, count(*) FROM events GROUP BY 1").fetchall())
        return Effects(per_step("TEST_FAIL"), per_step("TEST_PASS"),
                       {(int(s), str(p)): n for s, p, n in edits}, types)
    finally:
        conn.close()


def assert_each_step_once(db: Path) -> None:
    """Every approved step was red once, green once, and edited each file once."""
    steps = load_script().approved_plan.steps
    found = effects(db)
    numbers = [s.number for s in steps]
    assert found.test_fail == {n: 1 for n in numbers}, found.test_fail
    assert found.test_pass == {n: 1 for n in numbers}, found.test_pass
    expected = {(s.number, path): 1 for s in steps for path in {*s.red, *s.green}}
    assert found.edits == expected


@dataclass
class Reference:
    """A clean, uninterrupted demo run."""

    db: Path
    workspace: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One uninterrupted demo run, through the real command, shared by the tests."""
    root = tmp_path_factory.mktemp("reference")
    db, workspace = root / "swarm.db", root / "workspace"
    result = run_demo(db, workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    return Reference(db, workspace, result)
