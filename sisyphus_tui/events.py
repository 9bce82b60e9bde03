"""The event registry: one pydantic model per event type.

A payload is validated against its type's model before it is appended, so a
malformed event never reaches the log. Types outside the registry are accepted
only under an ``x.`` prefix (for external tools) and must be JSON objects.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sisyphus_tui.errors import InvalidPayload, UnknownEventType

EXTENSION_PREFIX = "x."


class Payload(BaseModel):
    """Base of every registered payload: unknown fields are refused, not dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskInit(Payload):
    """A run starts: the goal and the spec that defines done."""

    goal: str = Field(min_length=1)
    spec: dict[str, Any] = Field(default_factory=dict)


class PlanInit(Payload):
    """A plan (or a revision of it) is opened."""

    plan_id: str = Field(min_length=1)
    summary: str = ""
    revision: int = Field(default=1, ge=1)
    steps: int = Field(default=0, ge=0)


class PlanStep(Payload):
    """One numbered step of a plan, with the test that proves it."""

    plan_id: str = Field(min_length=1)
    step: int = Field(ge=1)
    title: str = Field(min_length=1)
    test: str = ""
    files: list[str] = Field(default_factory=list)


class Review(Payload):
    """A validator's verdict on a plan."""

    plan_id: str = Field(min_length=1)
    verdict: Literal["approve", "needs_changes"]
    reasons: list[str] = Field(default_factory=list)


class FileEdit(Payload):
    """A file in the workspace changed; hashes let a resumed actor check the effect."""

    path: str = Field(min_length=1)
    before_sha256: str | None = None
    after_sha256: str
    step: int | None = None


class TestRun(Payload):
    """Shared fields of TEST_FAIL and TEST_PASS."""

    command: list[str] = Field(default_factory=list)
    step: int | None = None
    exit_code: int | None = None
    duration_s: float | None = Field(default=None, ge=0)
    output_tail: str = ""


class TestFail(TestRun):
    """A test run failed (in TDD, the expected red before an edit)."""


class TestPass(TestRun):
    """A test run passed."""


class GateResult(Payload):
    """A quality gate ran (or a human passed it)."""

    gate: str = Field(min_length=1)
    passed: bool
    exit_code: int | None = None
    duration_s: float | None = Field(default=None, ge=0)
    output_tail: str = ""


class Message(Payload):
    """Mail between agents; the recipient is the event's ``to``."""

    text: str = ""
    kind: str = "note"
    data: dict[str, Any] = Field(default_factory=dict)
    reply_to: int | None = Field(default=None, ge=1)


class StatusUpdate(Payload):
    """An agent reports where it is."""

    agent: str = Field(min_length=1)
    state: str = Field(min_length=1)
    detail: str = ""
    phase: str | None = None


class AgentRegistered(Payload):
    """An agent has an inbox and a durable cursor from now on."""

    agent: str = Field(min_length=1)
    role: str | None = None


class AgentSpawned(Payload):
    """An agent was started, by skill or role."""

    agent: str = Field(min_length=1)
    role: str = Field(min_length=1)
    skill: str | None = None
    parent: str | None = None
    thinking: Literal["off", "think", "ultrathink"] = "off"


class AgentStopped(Payload):
    """An agent stopped, with why."""

    agent: str = Field(min_length=1)
    reason: str = ""


class ContextWiped(Payload):
    """An agent lost its memory; records what was thrown away."""

    agent: str = Field(min_length=1)
    lost: dict[str, Any] = Field(default_factory=dict)


class Resumed(Payload):
    """An agent booted again from its cursor."""

    agent: str = Field(min_length=1)
    cursor: int = Field(ge=0)
    reread: int = Field(ge=0)
    duration_ms: float = Field(ge=0)


class Checkpoint(Payload):
    """An agent's progress marker: the state it needs to resume without redoing work."""

    agent: str = Field(min_length=1)
    step: int | None = None
    state: dict[str, Any] = Field(default_factory=dict)


REGISTRY: dict[str, type[Payload]] = {
    "TASK_INIT": TaskInit,
    "PLAN_INIT": PlanInit,
    "PLAN_STEP": PlanStep,
    "REVIEW": Review,
    "FILE_EDIT": FileEdit,
    "TEST_FAIL": TestFail,
    "TEST_PASS": TestPass,
    "GATE_RESULT": GateResult,
    "MESSAGE": Message,
    "STATUS_UPDATE": StatusUpdate,
    "AGENT_REGISTERED": AgentRegistered,
    "AGENT_SPAWNED": AgentSpawned,
    "AGENT_STOPPED": AgentStopped,
    "CONTEXT_WIPED": ContextWiped,
    "RESUMED": Resumed,
    "CHECKPOINT": Checkpoint,
}


def _describe(error: ValidationError) -> str:
    """The first validation problem, naming the field: 'goal: Field required'."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "payload"
    return f"{field}: {first['msg']}"


def encode_payload(event_type: str, payload: BaseModel | dict[str, Any] | None) -> str:
    """Validate ``payload`` for ``event_type`` and return its JSON text.

    Raises UnknownEventType for an unregistered type without the ``x.`` prefix,
    and InvalidPayload (naming the field) for a payload that does not validate.
    """
    model = REGISTRY.get(event_type)
    if model is None:
        if not event_type.startswith(EXTENSION_PREFIX) or len(event_type) <= len(
            EXTENSION_PREFIX
        ):
            raise UnknownEventType(
                f"unknown event type {event_type!r} "
                f"(custom types need the {EXTENSION_PREFIX!r} prefix, e.g. 'x.{event_type}')"
            )
        if isinstance(payload, BaseModel):
            return payload.model_dump_json()
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise InvalidPayload(
                f"invalid {event_type} payload: must be a JSON object, "
                f"not {type(payload).__name__}"
            )
        try:
            return json.dumps(payload, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidPayload(f"invalid {event_type} payload: {exc}") from None
    if isinstance(payload, model):
        return payload.model_dump_json()
    if isinstance(payload, BaseModel):
        payload = payload.model_dump()
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidPayload(
            f"invalid {event_type} payload: must be a JSON object, not {type(payload).__name__}"
        )
    try:
        return model.model_validate(payload).model_dump_json()
    except ValidationError as exc:
        raise InvalidPayload(f"invalid {event_type} payload: {_describe(exc)}") from None


def decode_payload(event_type: str, payload: dict[str, Any]) -> BaseModel | dict[str, Any]:
    """The typed model for a stored payload (a plain dict for ``x.`` types)."""
    model = REGISTRY.get(event_type)
    if model is None:
        return payload
    return model.model_validate(payload)
