"""A headless swarm's progress lines show names from the log literally: a control
request for an agent whose name is an escape sequence (written past the payload
models, as another writer may have) is answered on stdout with the sequence escaped."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from sisyphus_tui.demo.runner import copy_sample
from sisyphus_tui.demo.script import GOAL, load_script
from sisyphus_tui.stream import open_store

OSC2 = "\x1b]2;pwned\x07"


def test_a_headless_run_prints_names_from_the_log_escaped(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    copy_sample(load_script().sample_dir, workspace)  # the demo's (the scripted brain's)

    async def create() -> None:
        async with await open_store(db):
            pass

    asyncio.run(create())
    conn = sqlite3.connect(db)
    conn.executemany('INSERT INTO events (type, actor, "to", payload, ts) VALUES (?, ?, ?, ?, 0)', [
        # (The demo's goal: the scripted brain plays nothing else.)
        ("TASK_INIT", "human", "kernel", json.dumps({"goal": GOAL, "spec": {
            "workspace": str(workspace)}})),
        ("CONTROL", "human", "swarm", json.dumps({"action": "wipe", "agent": OSC2})),
        ("CONTROL", "human", "swarm", json.dumps({"action": "resume", "agent": OSC2})),
        ("CONTROL", "human", "swarm", json.dumps({"action": "stop"})),
    ])
    conn.commit()
    conn.close()
    done = subprocess.run([sys.executable, "-m", "sisyphus_tui", "run", "--headless",
                           "--db", str(db), "--workspace", str(workspace)],
                          capture_output=True, timeout=60)
    out = done.stdout.decode("utf-8")
    assert b"\x1b" not in done.stdout + done.stderr and b"\x07" not in done.stdout, out
    # (Refused before they are carried out: the name breaks the agent-name rule.)
    assert r"control request 2 refused: invalid CONTROL payload: agent: invalid agent name " \
        r"'\x1b]2;pwned\x07'" in out, out
    assert r"control request 3 refused: invalid CONTROL payload: agent: invalid agent name " \
        r"'\x1b]2;pwned\x07'" in out, out
    assert done.returncode == 4, done.stderr  # the stop request: not a verdict
