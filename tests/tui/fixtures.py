"""A small, deterministic swarm log for the app's tests: fixed time stamps, hostile text."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from sisyphus_tui.narrative import BOOKKEEPING
from sisyphus_tui.stream import open_store

T0 = 1_800_000_000.0
HOSTILE = "\x1b[2J\x1b]0;pwned\x07 [bold red]boom[/] \x9b31m"
SPEC = {"gates": [{"name": "tests", "argv": ["{python}", "-m", "pytest"]},
                  {"name": "signoff", "human": True}], "workspace": "/nowhere"}


def _events() -> list[tuple[str, str | None, str | None, dict[str, Any], str | None]]:
    out: list[tuple[str, str | None, str | None, dict[str, Any], str | None]] = []
    out.append(("AGENT_SPAWNED", "swarm", None, {"agent": "kernel", "role": "kernel",
                                                 "skill": None, "thinking": "off"}, None))
    out.append(("AGENT_REGISTERED", "kernel", None, {"agent": "kernel", "role": "kernel"},
                 "agent:kernel"))
    out.append(("TASK_INIT", "human", "kernel", {"goal": "Refactor the SQL", "spec": SPEC}, "task"))
    for name, thinking in (("planner", "think"), ("validator", "ultrathink"),
                           ("executor", "off")):
        out.append(("AGENT_SPAWNED", "kernel", None, {"agent": name, "role": name,
                                                      "skill": name, "parent": "kernel",
                                                      "thinking": thinking}, f"spawn:{name}"))
        out.append(("AGENT_REGISTERED", name, None, {"agent": name, "role": name},
                     f"agent:{name}"))
    out.append(("PHASE", "kernel", None, {"phase": "execute", "reason": ""}, None))
    out.append(("PLAN_INIT", "planner", None, {"plan_id": "plan-1", "summary": "s",
                                               "approach": "parameterised queries",
                                               "revision": 1, "steps": 2,
                                               "precedents": []}, None))
    for n in (1, 2):
        out.append(("PLAN_STEP", "planner", None, {"plan_id": "plan-1", "step": n,
                                                   "title": f"step {n}", "test": "t",
                                                   "files": []}, None))
    out.append(("REVIEW", "validator", None, {"plan_id": "plan-1", "verdict": "approve",
                                              "reasons": [], "round": 1,
                                              "precedents": []}, None))
    out.append(("MESSAGE", "kernel", "executor", {"kind": "execute_step", "text": "step 1",
                                                  "data": {"step": 1}, "reply_to": None}, None))
    out.append(("MESSAGE", "human", "executor", {"kind": "note", "text": HOSTILE,
                                                 "data": {}, "reply_to": None}, None))
    out.append(("STATUS_UPDATE", "executor", None, {"agent": "executor", "state": "working",
                                                    "detail": "step 1", "phase": "execute"},
                None))
    out.append(("FILE_EDIT", "executor", None, {"path": "tests/test_repo.py",
                                                "before_sha256": None, "after_sha256": "ab",
                                                "step": 1, "already_applied": False}, None))
    out.append(("TEST_FAIL", "executor", None, {"command": ["python", "-m", "pytest"],
                                                "step": 1, "exit_code": 1, "duration_s": 0.5,
                                                "output_tail": "1 failed"}, None))
    out.append(("CHECKPOINT", "executor", None, {"agent": "executor", "cursor": 15, "step": None,
                                                 "state": {}}, None))
    return out


def story_offsets() -> list[int]:
    """The offsets of the log's story: every event but the bookkeeping the stream
    hides until ``b``."""
    return [i for i, (t, *_) in enumerate(_events(), start=1) if t not in BOOKKEEPING]


def build_log(path: Path, filler: int = 0) -> None:
    """Write the deterministic log (plus ``filler`` events) to a new database at ``path``."""

    async def create() -> None:
        async with await open_store(path):
            pass

    asyncio.run(create())
    conn = sqlite3.connect(path)
    rows = [(t, a, to, json.dumps(p, separators=(",", ":")), T0 + i, k)
            for i, (t, a, to, p, k) in enumerate(_events())]
    rows += [("x.filler", "tool", None, json.dumps({"i": i}), T0 + 100 + i, None)
             for i in range(filler)]
    conn.executemany('INSERT INTO events (type, actor, "to", payload, ts, key) '
                     "VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("INSERT INTO cursors (agent, position, ts) VALUES ('executor', 15, ?)", (T0,))
    conn.commit()
    conn.close()


def insert_events(path: Path, events: list[tuple[str, str | None, str | None, dict[str, Any]]],
                  ts: float = T0 + 50) -> None:
    """Append ``events`` (type, actor, to, payload) straight into the database, as another
    writer (or an older sisyphus) may have: no payload model checks them. A registration
    gets its key, as SwarmMail gives it."""
    conn = sqlite3.connect(path)
    conn.executemany('INSERT INTO events (type, actor, "to", payload, ts, key) '
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     [(t, a, to, json.dumps(p, separators=(",", ":")), ts + i,
                       f"agent:{p['agent']}" if t == "AGENT_REGISTERED" else None)
                      for i, (t, a, to, p) in enumerate(events)])
    conn.commit()
    conn.close()
