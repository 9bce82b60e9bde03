"""The demo script, played for real: the sample's own pytest runs in subprocesses on a copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sisyphus_tui.conductor import SpecError, parse_spec
from sisyphus_tui.demo.script import Script, Step, load_script

FINDING = re.compile(r"^(inventory/[\w/]+\.py):(\d+): SQL built by string formatting$")
STOPWORDS = {"and", "the", "in", "into", "of", "a", "an", "to", "so", "no", "is", "by", "with"}


@pytest.fixture(scope="module")
def script() -> Script:
    """One load for the module; determinism has its own test."""
    return load_script()


def copy_sample(script: Script, dest: Path) -> Path:
    """A fresh workspace: the sample copied verbatim, minus any bytecode a developer left."""
    workspace = dest / "workspace"
    shutil.copytree(
        script.sample_dir, workspace, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    return workspace


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``cwd`` as a real subprocess, writing no bytecode."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def run_pytest(workspace: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    """The sample's own pytest, on ``targets`` or the whole suite."""
    return run([sys.executable, "-m", "pytest", "-q", *targets], workspace)


def run_gate(script: Script, name: str, workspace: Path) -> subprocess.CompletedProcess[str]:
    """Run the spec's gate ``name`` the way the runtime does: {python} -> sys.executable."""
    (gate,) = [gate for gate in script.spec["gates"] if gate["name"] == name]
    argv = [sys.executable if arg == "{python}" else arg for arg in gate["argv"]]
    return run(argv, workspace)


def write(workspace: Path, files: dict[str, str]) -> None:
    """Write each workspace-relative path's full new content."""
    for relative, content in files.items():
        target = workspace / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def flagged_files(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The files the no-string-sql gate named, checking every line's format on the way."""
    lines = result.stdout.splitlines()
    assert lines, result
    matches = [FINDING.match(line) for line in lines]
    assert all(matches), lines
    return {match.group(1) for match in matches if match}


def words(text: str) -> set[str]:
    """Lower-case significant words, split on anything that is not a letter or digit."""
    return {word for word in re.split(r"[^a-z0-9]+", text.lower()) if len(word) > 2} - STOPWORDS


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """A failed run's output, for the assertion message."""
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_load_script_is_deterministic() -> None:
    first, second = load_script(), load_script()
    assert first == second
    # Fresh mutable parts: a caller editing its copy cannot change the next load.
    first.approved_plan.steps[0].green.clear()
    first.spec["gates"].clear()
    assert load_script() == second


def test_the_first_plan_finds_the_failed_precedent(script: Script) -> None:
    failed = [p for p in script.precedents if p["outcome"].startswith("failed:")]
    assert len(failed) == 1
    precedent_words = words(f"{failed[0]['title']} {failed[0]['what']}")
    assert len(words(script.first_plan.approach) & precedent_words) >= 2
    # ...while the approved plan does not trip over it.
    assert not words(script.approved_plan.approach) & precedent_words
    assert len(script.first_plan.steps) in (2, 3)


def test_the_goal_finds_the_successful_precedents(script: Script) -> None:
    successes = [p for p in script.precedents if p["outcome"].startswith("succeeded:")]
    assert len(script.precedents) >= 3 and len(successes) >= 2
    assert any("WAL" in p["title"] for p in successes)
    assert any("repository" in p["title"].lower() for p in successes)
    for precedent in successes:
        assert len(words(script.goal) & words(f"{precedent['title']} {precedent['what']}")) >= 2
    for precedent in script.precedents:
        assert set(precedent) == {"title", "what", "outcome", "tags"}
        assert precedent["tags"] and all(isinstance(tag, str) for tag in precedent["tags"])


def test_spec_gates_in_order_and_a_human_gate_is_allowed(script: Script) -> None:
    spec = script.spec
    assert [gate["name"] for gate in spec["gates"]] == ["tests", "no-string-sql", "compile"]
    assert all(gate["argv"][0] == "{python}" for gate in spec["gates"])
    assert (spec["max_review_rounds"], spec["max_gate_fixes"]) == (2, 2)
    # The runtime's own spec parser takes it as it is, and with a human gate added.
    parse_spec(spec)
    parse_spec({**spec, "gates": [*spec["gates"], {"name": "sign-off", "human": True}]})
    with pytest.raises(SpecError, match="unique"):
        parse_spec({**spec, "gates": [spec["gates"][0], spec["gates"][0]]})


def test_approved_steps_are_well_formed(script: Script) -> None:
    steps = script.approved_plan.steps
    assert [step.number for step in steps] == [1, 2, 3, 4]
    for step in steps:
        assert step.red and step.green
        assert step.files == tuple(sorted({*step.red, *step.green}))
        assert "inventory/audit.py" not in step.files
        assert step.test.split("::")[0] in step.red
        for relative, content in {**step.red, **step.green}.items():
            assert (script.sample_dir / relative).parent.is_dir(), relative
            compile(content, relative, "exec", dont_inherit=True)  # red fails by running
    assert set(script.gate_fixes) == {"no-string-sql"}
    assert "inventory/audit.py" in script.gate_fixes["no-string-sql"]


def assert_no_caches(workspace: Path) -> None:
    """Nothing the run did may leave bytecode or pytest's cache behind."""
    left = [p for p in workspace.rglob("*") if p.name in {"__pycache__", ".pytest_cache"}]
    assert not left, left


def test_the_refactor_plays_out_in_the_sample(script: Script, tmp_path: Path) -> None:
    workspace = copy_sample(script, tmp_path)

    original = run_pytest(workspace)
    assert original.returncode == 0, explain(original)
    gate = run_gate(script, "no-string-sql", workspace)
    assert gate.returncode == 1, explain(gate)
    assert flagged_files(gate) == {
        "inventory/items.py",
        "inventory/report.py",
        "inventory/audit.py",
    }

    step: Step
    for step in script.approved_plan.steps:
        write(workspace, step.red)
        red = run_pytest(workspace, step.test)
        assert red.returncode != 0, f"step {step.number} red passed:\n{explain(red)}"
        assert "SyntaxError" not in red.stdout + red.stderr, explain(red)
        write(workspace, step.green)
        green = run_pytest(workspace, step.test)
        assert green.returncode == 0, f"step {step.number} green:\n{explain(green)}"
        suite = run_pytest(workspace)
        assert suite.returncode == 0, f"step {step.number} suite:\n{explain(suite)}"

    gate = run_gate(script, "no-string-sql", workspace)
    assert gate.returncode == 1, explain(gate)
    assert flagged_files(gate) == {"inventory/audit.py"}

    write(workspace, script.gate_fixes["no-string-sql"])
    for spec_gate in script.spec["gates"]:
        result = run_gate(script, spec_gate["name"], workspace)
        assert result.returncode == 0, f"gate {spec_gate['name']}:\n{explain(result)}"
    assert (
        "ok: no SQL built by string formatting"
        in run_gate(script, "no-string-sql", workspace).stdout
    )
    assert_no_caches(workspace)
