"""The ledger shows text from the log literally: no escape sequence reaches the file or
``sisyphus ledger``'s stdout, and agent text cannot add Markdown structure (links,
code, emphasis, HTML, entities, headings, list items) to the rendering."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.markdown import Markdown

from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream import Event
from tests.tui.fixtures import T0, build_log

OSC2 = "\x1b]2;pwned\x07"
# Bytes that would act on a terminal: C0 but the newline, DEL, C1 (as UTF-8 text).
ACTING = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def insert(db: Path, events: list[tuple[str, str | None, dict[str, Any]]]) -> None:
    """Events written past the payload models, as another writer may have."""
    conn = sqlite3.connect(db)
    conn.executemany('INSERT INTO events (type, actor, payload, ts) VALUES (?, ?, ?, ?)',
                     [(t, a, json.dumps(p), T0 + 60 + i) for i, (t, a, p) in enumerate(events)])
    conn.commit()
    conn.close()


def sisyphus(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sisyphus_tui", *args], capture_output=True,
                          timeout=60)


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    """A log whose REVIEW's actor and plan id, and a few more fields, hold an OSC 2 (and
    a lone surrogate, which JSON carries)."""
    db = tmp_path / "swarm.db"
    build_log(db)
    insert(db, [
        ("REVIEW", OSC2, {"plan_id": OSC2, "verdict": "approve", "reasons": [OSC2]}),
        ("PHASE", "kernel", {"phase": "plan", "reason": "\ud800" + OSC2}),
        ("STATUS_UPDATE", "executor", {"agent": "executor", "state": OSC2}),
        ("CHECKPOINT", "executor", {"agent": OSC2, "step": OSC2}),
    ])
    return db


def test_the_ledger_file_and_stdout_hold_no_escape_sequence(hostile_db: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "SISYPHUS_LEDGER.md"
    written = sisyphus("ledger", "--db", str(hostile_db), "--out", str(out))
    assert written.returncode == 0, written.stderr
    printed = sisyphus("ledger", "--db", str(hostile_db))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == out.read_bytes()
    text = printed.stdout.decode("utf-8")
    assert not ACTING.search(text), [line for line in text.splitlines() if ACTING.search(line)]
    # Shown, as escapes (a Markdown backslash before each backslash).
    assert text.count(r"\\x1b\]2;pwned\\x07") >= 6
    assert r"\\ud800" in text


def rendered(source: str) -> str:
    """The Markdown as a terminal shows it, without styles."""
    console = Console(width=400, color_system=None, force_terminal=False, highlight=False,
                      emoji=False)
    with console.capture() as captured:
        console.print(Markdown(source))
    return captured.get()


def fold(events: list[tuple[str, str | None, dict[str, Any]]]) -> Ledger:
    ledger = Ledger()
    for offset, (type_, actor, payload) in enumerate(events, 1):
        ledger.apply(Event(offset, type_, actor, None, payload, T0 + offset, None))
    return ledger


MARKDOWN = [
    "[a link](http://example.com)", "<http://example.com>", "<b>html</b>", "&amp;",
    "*emphasis*", "_under_", "**strong**", "~~gone~~", "`code`", "back\\slash",
    "![image](x.png)",
]


@pytest.mark.parametrize("text", MARKDOWN)
def test_agent_text_adds_no_markdown_structure(text: str) -> None:
    ledger = fold([
        # (A gate's name and the spec's keys follow the spec's model: no room for text.)
        ("TASK_INIT", "human", {"goal": text, "spec": {"gates": [
            {"name": "g", "argv": ["pytest", "-k", text]}]}}),
        ("PLAN_INIT", "planner", {"plan_id": text, "summary": text, "approach": text}),
        ("PLAN_STEP", "planner", {"plan_id": text, "step": 1, "title": text, "test": text}),
        ("REVIEW", text, {"plan_id": text, "verdict": "approve", "reasons": [text]}),
        ("AGENT_SPAWNED", "swarm", {"agent": text, "role": text, "skill": text}),
        ("STATUS_UPDATE", text, {"agent": text, "state": text}),
        ("MEMORY_STORED", "kernel", {"title": text}),
    ])
    ledger.precedents_used.append(7)
    source = ledger.render()
    shown = rendered(source)
    # Every field shows as typed, all 15: goal, the gate's command (in code), the plan's
    # id, approach and summary, the step's title and test (in code), the review's plan,
    # actor and reasons, the agent's name, role, skill and state, the precedent's title.
    assert shown.count(text) == 15, shown
    assert "\x1b]8;" not in shown  # no hyperlink


@pytest.mark.parametrize("text", ["# heading", "- item", "+ item", "1. item", "2) item",
                                  "> quote", "---", "```"])
def test_text_that_starts_a_line_starts_no_block(text: str) -> None:
    ledger = fold([("TASK_INIT", "human", {"goal": text, "spec": {}}),
                   ("PLAN_INIT", "planner", {"plan_id": "p", "summary": text})])
    shown = rendered(ledger.render())
    assert shown.count(text.strip()) == 2, shown
