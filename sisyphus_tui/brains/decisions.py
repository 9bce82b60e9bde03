"""Typed decisions: one pydantic model per purpose a brain is asked for, validated where
the brain answers. A malformed answer names its field; a brain is asked once more, in
the same session, with what was wrong, before the turn fails."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sisyphus_tui.errors import SisyphusError


class InvalidDecision(SisyphusError):
    """A brain's answer does not fit its purpose's model (the message names the field)."""


class Decision(BaseModel):
    """Base of every decision: fields a brain adds beyond the model are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class PlanStep(Decision):
    """One step of a plan, with the test that proves it."""

    title: str = Field(min_length=1)
    test: str = ""
    files: list[str] = Field(default_factory=list)


class Plan(Decision):
    """``plan``: the approach and its steps."""

    approach: str = ""
    summary: str = ""
    tags: list[str] = Field(default_factory=list)
    steps: list[PlanStep] = Field(min_length=1)


class Review(Decision):
    """``review``: a verdict on a plan, the reasons, the precedents that decided it."""

    verdict: Literal["approve", "needs_changes"]
    reasons: list[str] = Field(default_factory=list)
    precedents: list[int] = Field(default_factory=list)


class Edit(Decision):
    """``red`` / ``green`` / ``fix``: the files to write, and the test to run."""

    files: dict[str, str] = Field(default_factory=dict)
    test: str | None = None


class TaskResult(Decision):
    """``task``: a sub-agent's answer."""

    text: str
    data: dict[str, Any] = Field(default_factory=dict)


DECISIONS: dict[str, type[Decision]] = {
    "plan": Plan, "review": Review, "red": Edit, "green": Edit, "fix": Edit,
    "task": TaskResult,
}


def check_decision(purpose: str, answer: Any) -> dict[str, Any]:
    """``answer`` validated against ``purpose``'s model, as a dict with every field;
    InvalidDecision names the first field that is wrong."""
    model = DECISIONS.get(purpose)
    if model is None:
        raise InvalidDecision(f"no decision model for purpose {purpose!r}")
    try:
        return model.model_validate(answer).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidDecision(f"the {purpose} answer is invalid: "
                              f"{where + ': ' if where else ''}{first['msg']}") from None
