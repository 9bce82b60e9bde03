"""Specs and quality gates (the Conductor pattern): a run's spec names its gates, and a
phase does not advance past a failing one.

A gate is a command (an argv list, never a shell string) run in the workspace with a
timeout, or a human gate passed with ``sisyphus approve GATE``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.events import describe_validation
from sisyphus_tui.process import OUTPUT_TAIL_CHARS, CommandResult, run_process

PYTHON_PLACEHOLDER = "{python}"


class SpecError(SisyphusError):
    """A spec that cannot be run: the message names the field."""


class Gate(BaseModel):
    """One quality gate: a command, or a human approval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    argv: tuple[str, ...] = ()
    human: bool = False
    timeout_s: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _command_or_human(self) -> Gate:
        if self.human == bool(self.argv):
            raise ValueError(f"gate {self.name!r} needs either argv (a list) or human: true")
        return self


class Spec(BaseModel):
    """What done means for a run: its gates and its bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gates: tuple[Gate, ...] = ()
    max_review_rounds: int = Field(default=2, ge=1)
    max_gate_fixes: int = Field(default=2, ge=0)
    workspace: str | None = None
    # What the background researcher looks into (the goal when not given).
    research: str | None = None
    # How the executor runs the tests (a step's target is added): the project's own
    # interpreter or runner; by default this one's pytest.
    tests: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        names = [g.name for g in self.gates]
        if len(names) != len(set(names)):
            raise ValueError("gate names must be unique")
        return self

    def gate(self, name: str) -> Gate:
        """The gate called ``name``."""
        for gate in self.gates:
            if gate.name == name:
                return gate
        raise SpecError(f"unknown gate {name!r} (gates: {', '.join(g.name for g in self.gates)})")


def parse_spec(data: Any) -> Spec:
    """Validate a spec (a dict, e.g. from TASK_INIT or a JSON file), naming the bad field."""
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid spec: {describe_validation(exc)}") from None


def resolve_argv(argv: tuple[str, ...] | list[str]) -> list[str]:
    """``{python}`` stands for this interpreter, so specs work in any environment."""
    return [sys.executable if a == PYTHON_PLACEHOLDER else a for a in argv]


def quiet_env() -> dict[str, str]:
    """The environment for workspace commands: no bytecode or caches left behind, so a
    resumed run's workspace is byte-identical to an uninterrupted one's."""
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


async def run_command(argv: list[str] | tuple[str, ...], cwd: Path,
                      timeout_s: float) -> CommandResult:
    """Run ``argv`` in ``cwd`` (its own process group, ``{python}`` resolved, the quiet
    environment), killing the whole group on timeout or cancel."""
    return await run_process(resolve_argv(tuple(argv)), cwd, timeout_s=timeout_s,
                             env=quiet_env(), tail_chars=OUTPUT_TAIL_CHARS)


async def run_gate(gate: Gate, workspace: Path) -> dict[str, Any]:
    """Run a command gate; returns a GATE_RESULT payload."""
    result = await run_command(gate.argv, workspace, gate.timeout_s)
    return {
        "gate": gate.name,
        "passed": result.ok,
        "exit_code": result.exit_code,
        "duration_s": round(result.duration_s, 4),
        "output_tail": result.output_tail,
    }
