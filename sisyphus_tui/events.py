"""The event registry: one pydantic model per event type.

A payload is validated against its type's model before it is appended, so a
malformed event never reaches the log. Types outside the registry are accepted
only under an ``x.`` prefix (for external tools) and must be JSON objects.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sisyphus_tui.errors import InvalidPayload, UnknownEventType

EXTENSION_PREFIX = "x."
# The payload key a reader finds in place of a stored payload it could not decode (bit
# rot, a row written by another program): readers flag and skip such an event, and no
# event may be written with it.
UNDECODABLE = "_undecodable"


# The agent-name rule (``mail.check_agent_name``): a name is shown in every pane and
# output and typed in the forms and the CLI, so it is plain: no markup, no escapes.
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
AGENT_NAME_RULE = "use 1-64 letters, digits or _ . @ -, starting with a letter or digit"


def _agent_name(name: str) -> str:
    if not AGENT_NAME.fullmatch(name):
        raise ValueError(f"invalid agent name {name!r}: {AGENT_NAME_RULE}")
    return name


AgentName = Annotated[str, AfterValidator(_agent_name)]
"""An agent's name in a payload: the agent-name rule, checked on append."""


class Payload(BaseModel):
    """Base of every registered payload: unknown fields are refused, not dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskInit(Payload):
    """A run starts: the goal and the spec that defines done (checked whole against the
    spec's model, as the kernel and the ledger read it; kept as it was written)."""

    goal: str = Field(min_length=1)
    spec: dict[str, Any] = Field(default_factory=dict)

    @field_validator("spec")
    @classmethod
    def _spec_runs(cls, spec: dict[str, Any]) -> dict[str, Any]:
        from sisyphus_tui.conductor import Spec

        Spec.model_validate(spec)  # its ValidationError names the field, under spec.
        return spec


class PlanInit(Payload):
    """A plan (or a revision of it) is opened."""

    plan_id: str = Field(min_length=1)
    summary: str = ""
    approach: str = ""
    revision: int = Field(default=1, ge=1)
    steps: int = Field(default=0, ge=0)
    precedents: list[int] = Field(default_factory=list)


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
    round: int = Field(default=1, ge=1)
    precedents: list[int] = Field(default_factory=list)


class FileEdit(Payload):
    """A file in the workspace changed; hashes let a resumed actor check the effect."""

    path: str = Field(min_length=1)
    before_sha256: str | None = None
    after_sha256: str | None = None  # None: the file was deleted
    step: int | None = None
    # True when a resumed actor found the edit already on disk (in flight at a crash).
    already_applied: bool = False
    # Who changed it: the swarm wrote what a brain answered ("written"), or a coding
    # agent edited the workspace itself and the executor saw it ("observed").
    how: Literal["written", "observed"] = "written"


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

    agent: AgentName
    state: str = Field(min_length=1)
    detail: str = ""
    phase: str | None = None


class AgentRegistered(Payload):
    """An agent has an inbox and a durable cursor from now on."""

    agent: AgentName
    role: str | None = None


class AgentSpawned(Payload):
    """An agent was started, by skill or role."""

    agent: AgentName
    role: str = Field(min_length=1)
    skill: str | None = None
    parent: AgentName | None = None
    thinking: Literal["off", "think", "ultrathink"] = "off"
    # The brain it thinks with (a kind of BRAINS), so a resume rebuilds the same one;
    # None: the hosting swarm's default. ``brain_config``: its backend's settings
    # (model, args, command, permissions; the names of its environment variables).
    brain: str | None = None
    brain_config: dict[str, Any] | None = None


class AgentStopped(Payload):
    """An agent stopped, with why."""

    agent: AgentName
    reason: str = ""


class ContextWiped(Payload):
    """An agent lost its memory; records what was thrown away."""

    agent: AgentName
    lost: dict[str, Any] = Field(default_factory=dict)


class Resumed(Payload):
    """An agent booted again from its cursor."""

    agent: AgentName
    cursor: int = Field(ge=0)
    reread: int = Field(ge=0)
    duration_ms: float = Field(ge=0)


class Checkpoint(Payload):
    """An agent's progress marker: the state it needs to resume without redoing work,
    committed with the cursor advance it describes."""

    agent: AgentName
    cursor: int | None = Field(default=None, ge=0)
    step: int | None = None
    state: dict[str, Any] = Field(default_factory=dict)
    # The workspace as this checkpoint left it: a commit of the shadow repository
    # under .sisyphus/ (an acting agent's checkpoints only; ``sisyphus restore``).
    workspace: str | None = Field(default=None, pattern=r"^[0-9a-f]{40,64}$")


class AgentFailed(Payload):
    """An actor raised; the others carry on. ``message``: the offset it was handling
    (a message an agent fails on twice is set aside, not failed on for ever)."""

    agent: AgentName
    error: str
    message: int | None = Field(default=None, ge=1)


class AgentStale(Payload):
    """An agent with pending work was silent for longer than its limit."""

    agent: AgentName
    silent_s: float = Field(ge=0)
    pending: int = Field(default=0, ge=0)


class TurnStarted(Payload):
    """A turn handed work to a coding agent: recorded before the agent runs, outside the
    turn's transaction, so a host killed mid-turn leaves a turn started and never
    committed (in doubt) that the next boot finds. ``workspace``: the shadow commit the
    turn starts from (what an in-doubt turn is rolled back to); ``attempt`` counts from 1."""

    agent: AgentName
    message: int = Field(ge=1)
    attempt: int = Field(default=1, ge=1)
    backend: str = Field(min_length=1)
    model: str | None = None
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    workspace: str | None = Field(default=None, pattern=r"^[0-9a-f]{40,64}$")
    session: str | None = None  # the backend session it resumes (None: a new one)
    recovering: bool = False  # the attempt redoes a turn found in doubt


class PermissionRequested(Payload):
    """An agent asked to use a tool and waits for an answer (a person's, from any TUI or
    shell; or its policy's once ``timeout_s`` passes). ``request``: the backend's id of
    the request, unique for the agent; ``message``: the turn it belongs to."""

    agent: AgentName
    request: str = Field(min_length=1, max_length=200)
    message: int | None = Field(default=None, ge=1)
    tool: str = Field(min_length=1)
    kind: str | None = None  # what "always" allows when not the tool (an ACP call's kind)
    input: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""  # why the agent's CLI asks, as it says
    timeout_s: float | None = Field(default=None, gt=0)
    on_timeout: Literal["allow", "deny"] = "deny"


class PermissionAnswered(Payload):
    """The answer to a PERMISSION_REQUESTED (keyed ``answer:AGENT:REQUEST``: the first
    answer wins, a second is a no-op). ``always``: allow this tool for the agent for the
    rest of the run; ``message``: said to the agent with a deny; ``by``: a person, the
    timeout, or a policy/always rule that answered without asking."""

    agent: AgentName
    request: str = Field(min_length=1, max_length=200)
    decision: Literal["allow", "deny"]
    always: bool = False
    message: str = ""
    by: Literal["human", "timeout", "policy"] = "human"


class AgentQueued(Payload):
    """An agent's turn waits for a slot: its backend already runs ``cap`` agents."""

    agent: AgentName
    backend: str = Field(min_length=1)
    running: int = Field(ge=0)
    cap: int = Field(ge=1)


class AgentStalled(Payload):
    """An agent's turn is in progress and it has said nothing for ``silent_s``."""

    agent: AgentName
    message: int | None = Field(default=None, ge=1)
    silent_s: float = Field(ge=0)


class AgentCancelled(Payload):
    """An agent's turn was cancelled (``how``: the last step the cancel needed: the
    protocol's own cancel, SIGINT, SIGKILL of its process group; ``none``: no process
    of its was running, e.g. a turn still waiting for its slot). The message stays
    unhandled until the agent is restarted."""

    agent: AgentName
    message: int | None = Field(default=None, ge=1)
    how: Literal["protocol", "sigint", "sigkill", "none"] = "none"


class Budget(Payload):
    """Spend crossed a budget: ``warn`` at 80%, ``exceeded`` at 100% (the run pauses
    until the budget is raised or the run resumed). ``agent`` None: the run's budget."""

    level: Literal["warn", "exceeded"]
    agent: AgentName | None = None
    spent_usd: float = Field(ge=0)
    limit_usd: float = Field(gt=0)


Phase = Literal["plan", "validate", "execute", "gates", "done", "blocked"]


class PhaseChanged(Payload):
    """The run entered a phase of Plan -> Validate -> Execute (then gates, done or blocked)."""

    phase: Phase
    reason: str = ""


class RunResumed(Payload):
    """A new host picked up a run an interruption (a kill, a crash, a stop) had left
    half done: where the log stood (``at``), the phase, and the steps done of all."""

    at: int = Field(ge=0)
    phase: Phase | Literal["idle"]
    done: int = Field(ge=0)
    total: int = Field(ge=0)


class Control(Payload):
    """A request to the running swarm, from any process (TUI, CLI, another TUI)."""

    action: Literal["wipe", "resume", "pause", "unpause", "spawn", "approve", "stop",
                    "cancel", "restart"]
    agent: AgentName | None = None
    reason: str = ""  # why (a pause the budget asked for says so)
    hold: bool = False
    skill: str | None = None
    prompt: str = ""
    background: bool = True
    thinking: Literal["off", "think", "ultrathink"] | None = None
    parent: AgentName | None = None
    gate: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> Control:
        if self.action in ("wipe", "resume", "spawn", "cancel", "restart") and \
                not self.agent:
            raise ValueError(f"agent is required for {self.action}")
        if self.action == "spawn" and not self.skill:
            raise ValueError("skill is required for spawn")
        if self.action == "approve" and not self.gate:
            raise ValueError("gate is required for approve")
        return self


class MemoryStored(Payload):
    """A precedent for memory-lane: what was done, how it turned out, tags."""

    title: str = Field(min_length=1)
    what: str = ""
    outcome: str = ""
    tags: list[str] = Field(default_factory=list)
    run: str | None = None


class MemoryFeedback(Payload):
    """Whether a precedent helped; adjusts its ranking."""

    memory_id: int = Field(ge=1)
    helpful: bool


class AgentOutput(Payload):
    """What an agent says and does while its turn is still open, appended as it happens
    (not held until the turn commits): keyed by agent, message and sequence, so a turn
    done again never writes a line twice. ``raw``: the backend's own line, bounded."""

    agent: AgentName
    message: int = Field(ge=1)
    sequence: int = Field(ge=0)
    kind: Literal["session", "text", "thinking", "tool_call", "tool_result",
                  "permission", "usage", "error", "finished", "raw"]
    text: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    raw: str | None = Field(default=None, max_length=65536)


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
    "RUN_RESUMED": RunResumed,
    "CHECKPOINT": Checkpoint,
    "AGENT_FAILED": AgentFailed,
    "AGENT_STALE": AgentStale,
    "PHASE": PhaseChanged,
    "CONTROL": Control,
    "MEMORY_STORED": MemoryStored,
    "MEMORY_FEEDBACK": MemoryFeedback,
    "AGENT_OUTPUT": AgentOutput,
    "TURN_STARTED": TurnStarted,
    "PERMISSION_REQUESTED": PermissionRequested,
    "PERMISSION_ANSWERED": PermissionAnswered,
    "AGENT_QUEUED": AgentQueued,
    "AGENT_STALLED": AgentStalled,
    "AGENT_CANCELLED": AgentCancelled,
    "BUDGET": Budget,
}


def describe_validation(error: ValidationError) -> str:
    """The first validation problem, naming the field: 'goal: Field required'."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    field = ".".join(str(part) for part in first["loc"])
    # A whole-model check (e.g. "skill is required for spawn") names its field itself.
    return f"{field}: {message}" if field else message


MAX_PAYLOAD_DEPTH = 64
"""Objects and lists nest at most this deep in a payload (the payload itself is level 1)."""
MIN_PAYLOAD_INT = -(2**63)
MAX_PAYLOAD_INT = 2**64 - 1
"""Payload integers are 64-bit: what orjson, the log's reader, reads back exactly (it
would turn a larger one into an approximate float)."""

# Dataclasses and datetimes are refused (TypeError), as json refused them, rather than
# silently stored as objects or strings; non-string keys become strings, as in json.
_JSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
                 | orjson.OPT_PASSTHROUGH_DATETIME)


def encode_json(payload: Any) -> str:
    """Compact JSON text of a payload, as the log stores it.

    orjson refuses lone surrogates, integers beyond 64 bits and nesting beyond 255 at no
    extra cost; two cheap tests on its output decide whether the payload must also be
    walked for what orjson lets through: NaN and infinities (written as ``null``) and
    nesting deeper than MAX_PAYLOAD_DEPTH (which needs that many brackets). Raises
    ValueError naming the first broken limit's path, TypeError for a value JSON has no
    type for.
    """
    try:
        out = orjson.dumps(payload, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError as exc:
        problem = _problem(payload)
        if problem is None:
            raise TypeError(str(exc)) from None
        raise ValueError(problem) from None
    if b"null" in out or (
        len(out) > 2 * MAX_PAYLOAD_DEPTH
        and out.count(b"{") + out.count(b"[") > MAX_PAYLOAD_DEPTH
    ):
        problem = _problem(payload)
        if problem is not None:
            raise ValueError(problem)
    return out.decode()


def _problem(value: Any) -> str | None:
    """The first place where ``value`` breaks a payload limit ('a.b.0: ...'), or None."""
    found = _find(value, 1)
    if found is None:
        return None
    path, problem = found
    path.reverse()
    if len(path) > 8:  # a.a.a.a...a.a
        return f"{'.'.join(path[:4])}...{'.'.join(path[-2:])}: {problem}"
    return f"{'.'.join(path)}: {problem}" if path else problem


def _bad_text(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"lone surrogate {text[exc.start]!r} at index {exc.start} "
                "(not valid Unicode)")
    return None


def _find(value: Any, depth: int) -> tuple[list[str], str] | None:
    """(path from the leaf up, problem) for the first bad value under ``value``."""
    if isinstance(value, BaseModel):
        value = dict(value)
    if isinstance(value, str):
        bad = _bad_text(value)
        return None if bad is None else ([], bad)
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], f"{value} is not a JSON number")
    if isinstance(value, int) and not isinstance(value, bool):
        if MIN_PAYLOAD_INT <= value <= MAX_PAYLOAD_INT:
            return None
        return [], "integer out of range (payload integers are 64-bit)"
    if isinstance(value, dict | list | tuple):
        if depth > MAX_PAYLOAD_DEPTH:
            return [], f"nested deeper than {MAX_PAYLOAD_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and (bad := _bad_text(key)) is not None:
                return [], f"key {key!r}: {bad}"
            found = _find(item, depth + 1)
            if found is not None:
                found[0].append(str(key))
                return found
    return None


def encode_payload(event_type: str, payload: BaseModel | dict[str, Any] | None) -> str:
    """Validate ``payload`` for ``event_type`` and return its JSON text.

    Raises UnknownEventType for an unregistered type without the ``x.`` prefix,
    and InvalidPayload (naming the field) for a payload that does not validate or
    breaks a limit of the log (encode_json).
    """
    model = REGISTRY.get(event_type)
    if model is None and type(payload) is dict and event_type.startswith(EXTENSION_PREFIX) \
            and len(event_type) > len(EXTENSION_PREFIX):
        # The hot path of external tools' events: a plain dict, encoded straight away.
        if UNDECODABLE in payload:
            raise InvalidPayload(f"invalid {event_type} payload: {UNDECODABLE!r} is the key "
                                 "readers find in place of a payload they cannot decode")
        try:
            return encode_json(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidPayload(f"invalid {event_type} payload: {exc}") from None
    if model is None:
        if not event_type.startswith(EXTENSION_PREFIX) or len(event_type) <= len(
            EXTENSION_PREFIX
        ):
            raise UnknownEventType(
                f"unknown event type {event_type!r} "
                f"(custom types need the {EXTENSION_PREFIX!r} prefix, e.g. 'x.{event_type}')"
            )
        if isinstance(payload, BaseModel):
            payload = payload.model_dump()
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise InvalidPayload(
                f"invalid {event_type} payload: must be a JSON object, "
                f"not {type(payload).__name__}"
            )
        return encode_payload(event_type, dict(payload))  # the plain dict's path, above
    if isinstance(payload, BaseModel) and not isinstance(payload, model):
        payload = payload.model_dump()
    if payload is None:
        payload = {}
    if not isinstance(payload, dict | model):
        raise InvalidPayload(
            f"invalid {event_type} payload: must be a JSON object, not {type(payload).__name__}"
        )
    try:
        valid = payload if isinstance(payload, model) else model.model_validate(payload)
        # Dumped to Python, then encoded by encode_json: the same limits as x. types.
        try:
            return encode_json(valid.model_dump())
        except TypeError:
            # A value JSON has no type for, in a free-form field (a Path, a datetime), is
            # converted as pydantic's JSON mode does; a broken limit fails here again.
            return encode_json(valid.model_dump(mode="json"))
    except ValidationError as exc:
        raise InvalidPayload(f"invalid {event_type} payload: {describe_validation(exc)}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        problem = _problem(payload) or str(exc) or type(exc).__name__
        raise InvalidPayload(f"invalid {event_type} payload: {problem}") from None


def decode_payload(event_type: str, payload: dict[str, Any]) -> BaseModel | dict[str, Any]:
    """The typed model for a stored payload (a plain dict for ``x.`` types)."""
    model = REGISTRY.get(event_type)
    if model is None:
        return payload
    return model.model_validate(payload)
