"""The demo's script: the refactor the scripted brain plays on the sample project.

The goal, both plans, the gates and the memory-lane precedents are here; the
file contents each step writes live as real files under ``script_data/``
(``approved/stepN/red/...``, ``approved/stepN/green/...``,
``gate_fixes/<gate>/...``), laid out as workspace-relative paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = DEMO_DIR / "sample"
DATA_DIR = DEMO_DIR / "script_data"


@dataclass(frozen=True)
class Step:
    """One TDD step: write ``red`` (the step's ``test`` fails), then ``green`` (it passes)."""

    number: int
    title: str
    test: str
    files: tuple[str, ...]
    red: dict[str, str]
    green: dict[str, str]


@dataclass(frozen=True)
class Plan:
    """A planner's proposal: a searchable one-line approach and its steps."""

    approach: str
    summary: str
    tags: tuple[str, ...]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Script:
    """Everything the scripted brain plays, start to finish."""

    goal: str
    spec: dict[str, Any]
    first_plan: Plan
    approved_plan: Plan
    gate_fixes: dict[str, dict[str, str]]
    precedents: tuple[dict[str, Any], ...]
    sample_dir: Path


GOAL = (
    "Refactor the inventory app's SQL into parameterised queries behind a repository, "
    "so no SQL is built by string formatting, with the behaviour tests passing throughout"
)

# The runtime replaces "{python}" with sys.executable and runs each gate with
# cwd = the workspace. "-B" because a gate must leave no __pycache__ behind,
# whatever the environment says.
GATES: tuple[dict[str, Any], ...] = (
    {"name": "tests", "argv": ["{python}", "-B", "-m", "pytest", "-q"], "timeout_s": 60},
    {"name": "no-string-sql", "argv": ["{python}", "-B", "tools/check_sql.py"], "timeout_s": 30},
    {"name": "compile", "argv": ["{python}", "-B", "tools/check_compile.py"], "timeout_s": 30},
)


def _first_plan() -> Plan:
    """The planner's first proposal, which the validator rejects on a failed precedent."""
    return Plan(
        approach="escape quotes and sanitise inputs in the string-formatted SQL",
        summary=(
            "Keep the SQL as it is and make the values safe: an escape helper that doubles "
            "single quotes and strips ';' and '--', applied to every value formatted into a query."
        ),
        tags=("sql", "escaping", "sanitising", "string-formatting"),
        # Never executed: the validator rejects this plan, so the steps carry no files.
        steps=(
            Step(
                number=1,
                title="An escape_sql() helper that doubles single quotes and strips ';' and '--'",
                test="tests/test_escape.py::test_escape_doubles_quotes",
                files=("inventory/escape.py", "tests/test_escape.py"),
                red={},
                green={},
            ),
            Step(
                number=2,
                title="Escape every value formatted into the items and report SQL",
                test="tests/test_items.py",
                files=("inventory/items.py", "inventory/report.py"),
                red={},
                green={},
            ),
            Step(
                number=3,
                title="Escape the audit log's SQL the same way",
                test="tests/test_audit.py",
                files=("inventory/audit.py",),
                red={},
                green={},
            ),
        ),
    )


APPROVED_APPROACH = "parameterised queries behind an ItemRepository"
APPROVED_SUMMARY = (
    "Move every item query into an ItemRepository whose SQL is constant text with ? "
    "placeholders; items.py and report.py delegate to it, so the public functions keep "
    "their behaviour. One TDD step per query: find, add, below, then the report."
)
APPROVED_TAGS = ("sql", "repository", "parameterised-queries", "sqlite", "tdd")
# (title, test) per step; the step's files come from script_data/approved/stepN/.
APPROVED_STEPS: tuple[tuple[str, str], ...] = (
    (
        "ItemRepository with a parameterised find; find_item delegates",
        "tests/test_repository.py::test_find_is_parameterised",
    ),
    (
        "ItemRepository.add with parameters; add_item delegates",
        "tests/test_repository.py::test_add_round_trips_quotes",
    ),
    (
        "ItemRepository.below(qty) with parameters; items_below delegates",
        "tests/test_repository.py::test_below_is_parameterised",
    ),
    (
        "The stock report reads through the repository (totals and below)",
        "tests/test_repository.py::test_totals_count_and_value_the_stock",
    ),
)

# Memory-lane seeds from "past runs". The failed one shares the first plan's
# approach words, so the validator's full-text search finds it; the successes
# share the goal's words (SQL, repository, parameterised), so the planner's does.
# The failed one avoids the approved plan's words, so that plan is not flagged too.
PRECEDENTS: tuple[dict[str, Any], ...] = (
    {
        "title": "Escape quotes and sanitise inputs in the string-formatted SQL (orders search)",
        "what": (
            "Kept the orders search's string-formatted SQL and added an escape helper that "
            "doubled single quotes and stripped ';' and '--' from the inputs before "
            "formatting them in."
        ),
        "outcome": (
            "failed: a numeric filter was formatted in without quotes, so '0 OR 1=1' had no "
            "quote to escape and an injection got through; the escaping helper was reverted."
        ),
        "tags": ["sql", "escaping", "sanitising", "string-formatting", "injection"],
    },
    {
        "title": "SQLite WAL mode for parallel writers",
        "what": (
            "Turned on SQLite WAL journal mode with a busy timeout, one connection per writer, "
            "so parallel agents writing through the repository's parameterised SQL stopped "
            "failing with 'database is locked'."
        ),
        "outcome": (
            "succeeded: eight parallel writers ran for an hour with no lock errors and readers "
            "never blocked."
        ),
        "tags": ["sqlite", "wal", "concurrency", "parallel-writers"],
    },
    {
        "title": "Parameterised SQL queries behind a repository (billing module)",
        "what": (
            "Moved every SQL statement of the billing module into a repository class whose "
            "queries are constant text with ? placeholders, one TDD step per query, the old "
            "functions delegating so their behaviour stayed the same; a gate then checked that "
            "no SQL was built by string formatting."
        ),
        "outcome": (
            "succeeded: hostile names round-trip as plain data; the public API and its tests "
            "were unchanged."
        ),
        "tags": ["sql", "repository", "parameterised-queries", "tdd", "sqlite"],
    },
)


def read_tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` as {relative posix path: text}, in sorted order."""
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        # Stray bytecode from someone running the files must never become "content".
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        files[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
    return files


def _approved_plan() -> Plan:
    """The approved plan, its red and green contents read from script_data/approved/."""
    steps = []
    for number, (title, test) in enumerate(APPROVED_STEPS, start=1):
        step_dir = DATA_DIR / "approved" / f"step{number}"
        red, green = read_tree(step_dir / "red"), read_tree(step_dir / "green")
        steps.append(
            Step(
                number=number,
                title=title,
                test=test,
                files=tuple(sorted({*red, *green})),
                red=red,
                green=green,
            )
        )
    return Plan(APPROVED_APPROACH, APPROVED_SUMMARY, APPROVED_TAGS, tuple(steps))


def load_script() -> Script:
    """The demo's script; the same content on every call, fresh mutable parts each time."""
    spec: dict[str, Any] = {
        "gates": [{**gate, "argv": list(gate["argv"])} for gate in GATES],
        "max_review_rounds": 2,
        "max_gate_fixes": 2,
        "research": "SQL built by string formatting",
    }
    fixes_dir = DATA_DIR / "gate_fixes"
    gate_fixes = {
        gate_dir.name: read_tree(gate_dir)
        for gate_dir in sorted(fixes_dir.iterdir())
        if gate_dir.is_dir() and gate_dir.name != "__pycache__"
    }
    precedents = tuple({**precedent, "tags": list(precedent["tags"])} for precedent in PRECEDENTS)
    return Script(
        goal=GOAL,
        spec=spec,
        first_plan=_first_plan(),
        approved_plan=_approved_plan(),
        gate_fixes=gate_fixes,
        precedents=precedents,
        sample_dir=SAMPLE_DIR,
    )
