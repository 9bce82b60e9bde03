"""The ledger: a pure fold over the log, rendered deterministically to Markdown.

``Ledger.apply(event)`` for every event from offset 1 on, then ``render()``: the
same events always give the same bytes, so the live ``SISYPHUS_LEDGER.md`` and a
rebuild from offset 0 are identical. Time stamps come from the events (UTC).
"""

from __future__ import annotations

import os
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from sisyphus_tui.conductor import parse_spec
from sisyphus_tui.events import REGISTRY, Phase
from sisyphus_tui.narrative import headline, resumed_run
from sisyphus_tui.safe_text import printable, printable_lines
from sisyphus_tui.stream.base import UNDECODABLE, Event
from sisyphus_tui.timefmt import utc
from sisyphus_tui.usage import Spend, Usage, UsageFold, cost_text, tokens_text

LEDGER_FILE = "SISYPHUS_LEDGER.md"
# Temp files of atomic writes end so; a crash may leave one, and a restart removes it.
TMP_SUFFIX = ".sisyphus-tmp"

STEP_ORDER = ("pending", "red", "green", "done")
# Skipped events are counted without limit, but only the first ones are kept with why.
SKIPPED_KEPT = 100
# The rare events whose fields the ledger keeps and renders are checked whole against
# their model when folded (a few microseconds each); the frequent ones (CHECKPOINT,
# STATUS_UPDATE, MESSAGE) are folded as they are, their handlers checking what they use.
# (A CONTROL request the swarm refuses as invalid is no pause either. The events about
# an agent are checked by hand instead, the types of what they keep but not the
# agent-name rule: a log an older version wrote keeps its agents, shown literally.)
CHECKED_ON_FOLD = frozenset({"PLAN_INIT", "PLAN_STEP", "REVIEW", "GATE_RESULT",
                             "MEMORY_STORED", "CONTROL", "RUN_RESUMED"})
PHASES = frozenset(get_args(Phase))
FINAL_PHASES = ("done", "blocked")
# How versions before faults were retried blocked a run on one: "agent executor failed:
# DatabaseLocked: ...". Such a block is no verdict, and a new host lifts it.
FAULT_BLOCK = re.compile(r"agent \S+ failed: (Database(Locked|Full|IOError|Unavailable|Error)|"
                         r"OSError|TimeoutError)\b")
# The roles the swarm and a person are registered with: they ack their inboxes without
# a checkpoint, so the log cannot say what they have read, and no host runs them.
NOT_RUN = frozenset({"swarm", "human"})
# The recoveries kept for the ledger (the latest; the earlier ones are counted).
RECOVERIES_KEPT = 100
# What a state reads as while the swarm is paused: nothing moves.
PAUSABLE = frozenset({"working", "idle", "waiting"})


# Characters that mean something inline in Markdown: escaped, so agent text cannot open
# a link (an OSC 8 hyperlink in a terminal), a code span, emphasis, HTML (dropped by
# the renderer) or an entity (``&amp;`` shown as ``&``).
_MARKDOWN_INLINE = re.compile(r"[\\`*~\[\]<>&|]|(?<![^\W_])_|_(?![^\W_])")
# What opens a block when it starts a line: a heading, a list item, a setext underline.
_MARKDOWN_BLOCK = re.compile(r"^(#{1,6}|[-+=]+)(?= |$)|^(\d{1,9})([.)])(?= |$)")


def _a(action: str) -> str:
    return f"{'an' if action[:1] in 'aeiou' else 'a'} {action}"


def _one_line(text: object) -> str:
    return " ".join(printable(str(text)).split())


def _texts(p: dict[str, Any], *required: str, optional: tuple[str, ...] = ()) -> None:
    """Refuse a payload whose fields the fold keeps are not text (a list where a name
    should be would break every later reader of the fold)."""
    for name in required:
        if not isinstance(p[name], str):
            raise TypeError(f"{name} must be text, not {type(p[name]).__name__}")
    for name in optional:
        if p.get(name) is not None and not isinstance(p[name], str):
            raise TypeError(f"{name} must be text, not {type(p[name]).__name__}")


def _cell(text: object) -> str:
    """Text from the log shown literally inside Markdown (a table cell, a list item), on
    one line, control characters shown as escapes."""
    return _MARKDOWN_INLINE.sub(lambda m: "\\" + m.group(), _one_line(text)) or "-"


def _block(text: object) -> str:
    """Like ``_cell``, for text that starts a line (or a list item's content)."""
    return _MARKDOWN_BLOCK.sub(lambda m: "\\" + m.group() if m.group(1) else
                               m.group(2) + "\\" + m.group(3), _cell(text), count=1)


def _code(text: object, *, in_table: bool = False) -> str:
    """Text from the log as a Markdown code span: backslashes stay (no escapes work in
    code), the fence is longer than any run of backticks inside."""
    out = _one_line(text) or "-"
    if in_table:
        out = out.replace("|", "\\|")  # a table's cells split on bare pipes, even in code
    fence = "`" * (max((len(run) for run in re.findall("`+", out)), default=0) + 1)
    pad = " " if out[0] == "`" or out[-1] == "`" else ""
    return f"{fence}{pad}{out}{pad}{fence}"


def _fenced(text: str) -> list[str]:
    """Multi-line text from the log as a fenced code block: its lines kept, control
    characters escaped, the fence longer than any run of backticks inside."""
    body = printable_lines(text.rstrip("\n"))
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    return [fence + "text", *body.split("\n"), fence]


def _tilde(text: str) -> str:
    """An estimate's ``~`` escaped (Markdown reads a tilde as strikethrough)."""
    return text.replace("~", "\\~")


def _recovery(entry: dict[str, Any]) -> str:
    """One line of the Recoveries section: when, who, what (all from the events)."""
    when = utc(entry["ts"])
    if entry["kind"] == "wipe":
        by = f", requested by {_cell(entry['by'])}" if entry.get("by") else ""
        return f"- {when} #{entry['offset']}: {_cell(entry['agent'])}: context wiped{by}"
    if entry["kind"] == "resume":
        return (f"- {when} #{entry['offset']}: {_cell(entry['agent'])}: resumed from "
                f"checkpoint @{entry['from']} ({entry['reread']} "
                f"{'event' if entry['reread'] == 1 else 'events'} re-read, "
                f"{entry['ms']:.1f} ms)")
    return (f"- {when} #{entry['offset']}: host: {_cell(resumed_run(entry))} "
            f"(the log was at offset {entry['at']})")


@dataclass
class StepView:
    """One plan step and how far it got."""

    number: int
    title: str
    test: str
    files: list[str]
    state: str = "pending"


@dataclass
class PlanView:
    """A plan revision as the planner wrote it."""

    plan_id: str
    revision: int
    approach: str
    summary: str
    precedents: list[int]
    steps: dict[int, StepView] = field(default_factory=dict)
    verdict: str = "proposed"


# What an agent's live output says about it while its turn runs.
# The states of an agent in the middle of a turn (what a cancel can stop).
IN_A_TURN = frozenset({"working", "stalled", "queued", "needs input"})
LIVE_KINDS = frozenset({"session", "text", "thinking", "tool_call", "tool_result",
                        "permission"})


@dataclass
class AgentView:
    """An agent as the log describes it."""

    name: str
    role: str = "-"
    skill: str | None = None
    thinking: str = "off"
    parent: str | None = None
    brain: str | None = None  # the brain it was spawned with (None: the host's default)
    brain_config: dict[str, Any] | None = None
    session: str | None = None  # its coding agent's backend session (resumed next turn)
    state: str = "registered"
    phase: str = "-"
    cursor: int = 0
    last_ts: float = 0.0
    detail: str = ""
    spawned: bool = False  # started by AGENT_SPAWNED (a host runs it), not only registered
    pending: int = 0  # events addressed to it after its cursor
    wiped_ts: float | None = None  # its last context wipe
    resumed_ts: float | None = None  # its last resume (after a wipe, a failure, a restart)
    resumed_from: int | None = None  # the checkpoint cursor it resumed from
    reread: int = 0  # what that resume re-read: events
    resume_ms: float = 0.0  # ... and how long it took
    # The permission requests it waits on (request id -> the PERMISSION_REQUESTED
    # payload and its ``ts``), and the tools a person allowed it for the rest of the run.
    asking: dict[str, dict[str, Any]] = field(default_factory=dict)
    always: set[str] = field(default_factory=set)
    # Its turn in progress (TURN_STARTED, until the cursor passes its message).
    turn_message: int | None = None
    turn_ts: float | None = None
    turn_attempt: int = 0
    # What it spent, summed over its ``usage`` outputs (cost_is_estimate: some of it
    # was priced from the config's table, the backend gave tokens but no cost).
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_usd: float = 0.0
    cost_is_estimate: bool = False


@dataclass
class GateView:
    """The latest result of a quality gate, and how many times it ran."""

    name: str
    passed: bool | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    output_tail: str = ""
    runs: int = 0
    human: bool = False


class Ledger:
    """The run's state, folded from events; ``render()`` is SISYPHUS_LEDGER.md."""

    def __init__(self) -> None:
        self.offset = 0
        self.goal: str | None = None
        self.spec: dict[str, Any] = {}
        self.task_ts: float | None = None
        self.phase = "idle"
        self.phase_reason = ""
        self.phase_before = "idle"  # the phase before the current one (to resume a block)
        self.paused = False
        # The last budget line the run crossed (BUDGET: 80% or all of a limit spent).
        self.budget: dict[str, Any] | None = None
        self.plans: dict[str, PlanView] = {}
        self.approved_plan: str | None = None
        self.reviews: list[dict[str, Any]] = []
        self.gates: dict[str, GateView] = {}
        self.agents: dict[str, AgentView] = {}
        self.last_checkpoint: dict[str, Any] | None = None
        self.memories: dict[int, str] = {}
        self.precedents_used: list[int] = []
        # Events that could not be decoded or applied: skipped, and shown, never fatal.
        self.skipped: dict[int, str] = {}
        # (agent, message offset) an agent failed on: the second failure sets it aside.
        self.failed_on: set[tuple[str, int]] = set()
        self.skipped_count = 0
        # The offsets addressed to each agent after its cursor (an agent may be written
        # to before it is registered): its ``pending`` is their count.
        self._inboxes: dict[str, deque[int]] = {}
        # The human gate the kernel's last checkpoint says it waits for, and the gates
        # a person has asked to approve (a request on its way is an answer).
        self._kernel_waits: str | None = None
        self._approvals: set[str] = set()
        self._wipe_requests: dict[str, str] = {}  # agent -> who asked for its wipe
        self.last_interruption: dict[str, Any] | None = None
        self.recoveries: list[dict[str, Any]] = []
        self.recoveries_count = 0
        self._usage: dict[str, UsageFold] = {}  # agent -> its usage events summed

    # -- the fold ------------------------------------------------------------------

    def apply(self, event: Event) -> str | None:
        """Fold one event in (events must come in offset order). An event that cannot
        be decoded or applied (bit rot, a payload an older version let through) is
        skipped and recorded; returns why, or None when it was applied."""
        self.offset = event.offset
        p = event.payload
        if UNDECODABLE in p:
            return self._skip(event, str(p[UNDECODABLE]))
        actor = self.agents.get(event.actor) if event.actor else None
        if actor is not None:
            actor.last_ts = event.ts
        if event.to:
            self._addressed(event.to, event.offset)
        handler = getattr(self, "_on_" + event.type.replace(".", "_"), None)
        if handler is not None:
            try:
                if event.type in CHECKED_ON_FOLD:
                    REGISTRY[event.type].model_validate(p)
                handler(event, p)
            except Exception as exc:
                return self._skip(event, f"{type(exc).__name__}: {exc}")
        return None

    def _skip(self, event: Event, why: str) -> str:
        reason = printable(f"{event.type}: {why}")[:300]
        self.skipped_count += 1
        if len(self.skipped) < SKIPPED_KEPT:
            self.skipped[event.offset] = reason
        return reason

    def _agent(self, name: str) -> AgentView:
        if not isinstance(name, str) or not name:
            raise TypeError(f"agent must be a name, not {name!r}")
        if name not in self.agents:
            self.agents[name] = AgentView(name, pending=len(self._inboxes.get(name, ())))
        return self.agents[name]

    def _addressed(self, name: str, offset: int) -> None:
        view = self.agents.get(name)
        if view is not None and view.role in NOT_RUN:
            return
        inbox = self._inboxes.setdefault(name, deque())
        inbox.append(offset)
        if view is not None:
            view.pending = len(inbox)

    def _moved(self, agent: AgentView) -> None:
        """The agent's cursor moved on: what it has read is no longer pending."""
        inbox = self._inboxes.get(agent.name)
        while inbox and inbox[0] <= agent.cursor:
            inbox.popleft()
        agent.pending = len(inbox) if inbox else 0

    def _recovered(self, entry: dict[str, Any]) -> None:
        self.recoveries_count += 1
        self.recoveries.append(entry)
        if len(self.recoveries) > RECOVERIES_KEPT:
            del self.recoveries[0]

    def _on_TASK_INIT(self, event: Event, p: dict[str, Any]) -> None:
        goal, spec = p["goal"], p.get("spec", {})
        if not isinstance(goal, str):
            raise TypeError(f"goal is a {type(goal).__name__}, not text")
        gates = parse_spec(spec).gates  # checked whole before anything is folded in
        if self.goal is not None:
            return  # the run's task is the first: a later one changes nothing (the kernel too)
        self.goal, self.spec, self.task_ts = goal, spec, event.ts
        for gate in gates:
            self.gates[gate.name] = GateView(gate.name, human=gate.human)

    def _on_PHASE(self, event: Event, p: dict[str, Any]) -> None:
        if p["phase"] not in PHASES or not isinstance(p.get("reason", ""), str):
            raise ValueError(f"not a phase of a run: {p['phase']!r}")
        if p["phase"] != self.phase:
            self.phase_before = self.phase
        self.phase = p["phase"]
        self.phase_reason = p.get("reason", "")

    def _on_PLAN_INIT(self, event: Event, p: dict[str, Any]) -> None:
        self.plans[p["plan_id"]] = PlanView(
            p["plan_id"], p.get("revision", 1), p.get("approach", ""), p.get("summary", ""),
            list(p.get("precedents", [])),
        )
        self._use(p.get("precedents", []))

    def _on_PLAN_STEP(self, event: Event, p: dict[str, Any]) -> None:
        plan = self.plans.get(p["plan_id"])
        if plan is not None:
            plan.steps[p["step"]] = StepView(p["step"], p["title"], p.get("test", ""),
                                             list(p.get("files", [])))

    def _on_REVIEW(self, event: Event, p: dict[str, Any]) -> None:
        self.reviews.append(dict(p) | {"by": event.actor or "-", "ts": event.ts})
        plan = self.plans.get(p["plan_id"])
        if plan is not None:
            plan.verdict = "approved" if p["verdict"] == "approve" else "needs changes"
        if p["verdict"] == "approve":
            self.approved_plan = p["plan_id"]
        self._use(p.get("precedents", []))

    def _use(self, ids: list[int]) -> None:
        for memory_id in ids:
            if memory_id not in self.precedents_used:
                self.precedents_used.append(memory_id)

    def _step(self, p: dict[str, Any], state: str) -> None:
        plan = self.plans.get(self.approved_plan or "")
        step = p.get("step")
        if plan is None or step not in plan.steps:
            return
        view = plan.steps[step]
        if STEP_ORDER.index(state) > STEP_ORDER.index(view.state):
            view.state = state

    def _on_TEST_FAIL(self, event: Event, p: dict[str, Any]) -> None:
        self._step(p, "red")

    def _on_TEST_PASS(self, event: Event, p: dict[str, Any]) -> None:
        self._step(p, "green")

    def _on_GATE_RESULT(self, event: Event, p: dict[str, Any]) -> None:
        gate = self.gates.setdefault(p["gate"], GateView(p["gate"]))
        gate.passed = p["passed"]
        gate.exit_code = p.get("exit_code")
        gate.duration_s = p.get("duration_s")
        gate.output_tail = p.get("output_tail", "")
        gate.runs += 1

    def _on_AGENT_REGISTERED(self, event: Event, p: dict[str, Any]) -> None:
        _texts(p, optional=("role",))
        agent = self._agent(p["agent"])
        if p.get("role") and agent.role == "-":
            agent.role = p["role"]
        if agent.role in NOT_RUN:  # (its reads are never on the record: nothing pending)
            self._inboxes.pop(agent.name, None)
            agent.pending = 0

    def _on_AGENT_SPAWNED(self, event: Event, p: dict[str, Any]) -> None:
        _texts(p, "role", optional=("skill", "thinking", "parent", "brain"))
        agent = self._agent(p["agent"])
        agent.role, agent.skill = p["role"], p.get("skill")
        agent.thinking, agent.parent = p.get("thinking", "off"), p.get("parent")
        agent.brain = p.get("brain")
        config = p.get("brain_config")
        agent.brain_config = dict(config) if isinstance(config, dict) else None
        agent.state, agent.last_ts, agent.spawned = "idle", event.ts, True

    def _on_AGENT_OUTPUT(self, event: Event, p: dict[str, Any]) -> None:
        agent = self._agent(p["agent"])
        kind = p.get("kind")
        if kind == "session":
            _texts(p["data"], "session_id")
            agent.session = p["data"]["session_id"]
        if kind == "usage":
            self._spent(agent, p.get("data"))
        if kind in LIVE_KINDS:
            # Its turn is running (its status is committed with the turn, at the end):
            # what it does now is its state and detail until then.
            raw = p.get("data")
            data: dict[str, Any] = raw if isinstance(raw, dict) else {}
            what = data.get("name") if kind == "tool_call" else p.get("text")
            agent.state = "needs input" if agent.asking else "working"
            # (kept as the log has it, on one line: every view escapes it when shown)
            agent.detail = " ".join(f"{kind}: {what}".split() if what else [str(kind)])[:160]

    def _spent(self, agent: AgentView, data: Any) -> None:
        """One usage output summed into the agent's spend: every attempt of a turn
        counts (what a killed attempt spent was spent), each output once (its key)."""
        if not isinstance(data, dict):
            raise TypeError("a usage output's data must be an object")
        fold = self._usage.setdefault(agent.name, UsageFold())
        fold.add(data, agent.session)
        total = fold.total
        agent.tokens_in, agent.tokens_out = total.tokens_in, total.tokens_out
        agent.tokens_cached, agent.cost_usd = total.tokens_cached, total.cost_usd
        agent.cost_is_estimate = total.cost_is_estimate

    def _on_BUDGET(self, event: Event, p: dict[str, Any]) -> None:
        if p["level"] in ("warn", "exceeded") and float(p["limit_usd"]) > 0:
            self.budget = dict(p)

    def _on_TURN_STARTED(self, event: Event, p: dict[str, Any]) -> None:
        agent = self._agent(p["agent"])
        agent.turn_message, agent.turn_ts = p["message"], event.ts
        agent.turn_attempt = int(p.get("attempt") or 1)
        agent.asking.clear()  # (what a killed host's turn asked is not asked any more)
        agent.state = "working"

    def _on_PERMISSION_REQUESTED(self, event: Event, p: dict[str, Any]) -> None:
        _texts(p, "request", "tool")
        agent = self._agent(p["agent"])
        agent.asking[p["request"]] = dict(p) | {"ts": event.ts}
        agent.state = "needs input"
        agent.detail = " ".join(f"asks to use {p['tool']}".split())[:160]

    def _on_PERMISSION_ANSWERED(self, event: Event, p: dict[str, Any]) -> None:
        _texts(p, "request", "decision")
        agent = self._agent(p["agent"])
        asked = agent.asking.pop(p["request"], None)
        if p.get("always") and p["decision"] == "allow" and asked is not None:
            agent.always.add(str(asked.get("kind") or asked.get("tool")))
        if asked is not None:
            done = "allowed" if p["decision"] == "allow" else "denied"
            agent.detail = " ".join(f"{done} {asked.get('tool')}".split())[:160]
        if not agent.asking and agent.state == "needs input":
            agent.state = "working"
        elif agent.asking:  # (the next question is what it waits on now)
            waiting = min(agent.asking.values(), key=lambda a: float(a.get("ts") or 0.0))
            agent.detail = " ".join(f"asks to use {waiting.get('tool')}".split())[:160]

    def _on_AGENT_QUEUED(self, event: Event, p: dict[str, Any]) -> None:
        agent = self._agent(p["agent"])
        agent.state = "queued"
        agent.detail = f"waits for a {p['backend']} slot ({p['running']}/{p['cap']} busy)"

    def _on_AGENT_STALLED(self, event: Event, p: dict[str, Any]) -> None:
        agent = self._agent(p["agent"])
        if agent.state in ("working", "stalled"):
            agent.state = "stalled"
            agent.detail = f"no output for {float(p['silent_s']):.0f}s"

    def _on_AGENT_CANCELLED(self, event: Event, p: dict[str, Any]) -> None:
        agent = self._agent(p["agent"])
        agent.state = "cancelled"
        agent.asking.clear()
        agent.detail = f"turn cancelled ({p.get('how', 'none')}): restart to redo it"

    def _on_STATUS_UPDATE(self, event: Event, p: dict[str, Any]) -> None:
        _texts(p, "state", optional=("detail", "phase"))
        agent = self._agent(p["agent"])
        agent.state, agent.detail = p["state"], p.get("detail", "")
        if p.get("phase"):
            agent.phase = p["phase"]

    def _on_CHECKPOINT(self, event: Event, p: dict[str, Any]) -> None:
        agent = self._agent(p["agent"])
        if p.get("cursor") is not None:
            agent.cursor = max(agent.cursor, p["cursor"])
            self._moved(agent)
            if agent.turn_message is not None and agent.turn_message <= agent.cursor:
                agent.turn_message = agent.turn_ts = None
                agent.asking.clear()
        if agent.role == "kernel":
            state = p.get("state")
            waits = state.get("waiting_gate") if isinstance(state, dict) else None
            self._kernel_waits = waits if isinstance(waits, str) else None
        if agent.state in ("stale", "registered"):
            agent.state = "idle"
        if p.get("step") is not None:
            self.last_checkpoint = {"agent": p["agent"], "step": p["step"], "ts": event.ts}
            if agent.role == "executor":
                self._step(p, "done")

    def _on_CONTEXT_WIPED(self, event: Event, p: dict[str, Any]) -> None:
        agent = self._agent(p["agent"])
        agent.state, agent.session = "wiped", None  # a wipe forgets the conversation
        agent.wiped_ts = event.ts
        self._recovered({"kind": "wipe", "agent": agent.name, "ts": event.ts,
                         "offset": event.offset,
                         "by": self._wipe_requests.pop(agent.name, None)})

    def _on_RESUMED(self, event: Event, p: dict[str, Any]) -> None:
        if not isinstance(p["cursor"], int) or not isinstance(p["reread"], int) or \
                not isinstance(p["duration_ms"], int | float):
            raise TypeError("cursor and reread must be whole numbers, duration_ms a number")
        agent = self._agent(p["agent"])
        agent.state, agent.cursor = "idle", max(agent.cursor, p["cursor"])
        self._moved(agent)
        agent.resumed_ts, agent.resumed_from = event.ts, p["cursor"]
        agent.reread, agent.resume_ms = p["reread"], float(p["duration_ms"])
        self._recovered({"kind": "resume", "agent": agent.name, "ts": event.ts,
                         "offset": event.offset, "from": p["cursor"], "reread": p["reread"],
                         "ms": float(p["duration_ms"])})

    def _on_RUN_RESUMED(self, event: Event, p: dict[str, Any]) -> None:
        self.last_interruption = {"ts": event.ts, "at": p["at"], "phase": p["phase"],
                                  "done": p["done"], "total": p["total"],
                                  "offset": event.offset}
        self._recovered({"kind": "host", **self.last_interruption})

    def _on_AGENT_STALE(self, event: Event, p: dict[str, Any]) -> None:
        self._agent(p["agent"]).state = "stale"

    def _on_AGENT_FAILED(self, event: Event, p: dict[str, Any]) -> None:
        _texts(p, "error")
        agent = self._agent(p["agent"])
        if isinstance(p.get("message"), int):
            self.failed_on.add((agent.name, p["message"]))
        agent.state, agent.detail = "failed", p["error"]
        agent.asking.clear()  # (its turn is over: nobody waits for those answers)
        agent.turn_message = agent.turn_ts = None  # (a restart does it again, not a cancel)

    def _on_AGENT_STOPPED(self, event: Event, p: dict[str, Any]) -> None:
        _texts(p, optional=("reason",))
        agent = self._agent(p["agent"])
        if agent.state != "failed":
            agent.state = "done"
        agent.detail = p.get("reason", "")

    def _on_CONTROL(self, event: Event, p: dict[str, Any]) -> None:
        if p["action"] in ("pause", "unpause"):
            self.paused = p["action"] == "pause"
        elif p["action"] == "approve":
            self._approvals.add(p["gate"])
        elif p["action"] == "wipe":
            self._wipe_requests[p["agent"]] = event.actor or "-"

    def _on_MESSAGE(self, event: Event, p: dict[str, Any]) -> None:
        # An approval sent to the kernel by hand (``sisyphus send``) is an answer too.
        data = p.get("data")
        if event.to == "kernel" and p.get("kind") == "approve" and isinstance(data, dict) \
                and isinstance(data.get("gate"), str):
            self._approvals.add(data["gate"])

    def _on_MEMORY_STORED(self, event: Event, p: dict[str, Any]) -> None:
        self.memories[event.offset] = p["title"]

    # -- queries -------------------------------------------------------------------

    def plan(self, plan_id: str | None = None) -> PlanView | None:
        """A plan by id; by default the approved one, else the latest."""
        if plan_id is not None:
            return self.plans.get(plan_id)
        if self.approved_plan is not None:
            return self.plans[self.approved_plan]
        return list(self.plans.values())[-1] if self.plans else None

    def progress(self) -> tuple[int, int]:
        """Steps done and in all, of the plan being executed."""
        plan = self.plans.get(self.approved_plan or "")
        if plan is None:
            return 0, 0
        return sum(s.state == "done" for s in plan.steps.values()), len(plan.steps)

    def over(self) -> bool:
        """Whether the run has ended: done, or blocked by a verdict (a block that was a
        fault is lifted by the next host, which goes on)."""
        return self.phase == "done" or (self.phase == "blocked"
                                        and not FAULT_BLOCK.match(self.phase_reason))

    def shown_state(self, agent: AgentView, *, hosted: bool | None = None) -> str:
        """The state to show for ``agent``: ``no host`` when nothing runs the swarm
        (``hosted`` False; None: not known) and the agent still had work, ``paused``
        while the swarm is, ``blocked`` once the run is; else its own state. An agent
        no host runs (the swarm, a person, one run by ``sisyphus agent``) is as it says."""
        if not agent.spawned or agent.role in NOT_RUN:
            return agent.state
        state = agent.state
        if self.phase == "blocked" and state != "failed":
            return "blocked"
        if self.over():
            return state
        # (No run in the log, no swarm to host: an agent `sisyphus agent` runs on its own
        # database is spawned there too, and its own process says what it does.)
        if hosted is False and self.goal is not None and state not in ("done", "failed"):
            return "no host"
        if self.paused and state in PAUSABLE:
            return "paused"
        return state

    def spend(self) -> Spend:
        """What the run spent: each agent's usage summed (agents that spent nothing
        left out), per role, and in all."""
        agents = {name: fold.total for name, fold in sorted(self._usage.items())
                  if fold.total.spent}
        roles: dict[str, Usage] = {}
        run = Usage()
        for name, used in agents.items():
            view = self.agents.get(name)
            role = view.role if view is not None else "-"
            roles[role] = roles.get(role, Usage()) + used
            run = run + used
        return Spend(agents, dict(sorted(roles.items())), run)

    def waiting_for_human(self) -> list[str]:
        """The human gates the run waits for now (the kernel's checkpoint says it waits,
        and no approval is on its way), by name; empty if none."""
        gate = self._kernel_waits
        if gate is None or self.over() or self.phase != "gates" or gate in self._approvals:
            return []
        view = self.gates.get(gate)
        return [gate] if view is not None and view.human and not view.passed else []

    def refusal(self, action: str, agent: str | None = None, *,
                gate: str | None = None) -> str | None:
        """Why a control request (``action`` on ``agent``, or ``gate`` to approve) would
        not be carried out, on one line; None if it would be."""
        if self.goal is not None and self.over():
            return f"the run is {self.phase}: nothing will carry out {_a(action)}"
        if action in ("wipe", "resume", "spawn") and not agent:
            return f"{_a(action)} needs an agent"
        if action == "spawn":
            return f"an agent named {agent} already exists" if agent in self.agents else None
        if action == "approve":
            if not gate:
                return "an approve needs a gate"
            view = self.gates.get(gate)
            if view is None:
                return f"unknown gate '{gate}': no such gate in this run's spec"
            if not view.human:
                return f"{gate} is a command gate: it runs itself, nothing to approve"
            return f"gate {gate} is already approved" if view.passed else None
        if action in ("cancel", "restart"):
            return self._turn_refusal(action, agent)
        if action not in ("wipe", "resume"):
            return None
        assert agent is not None
        view_of = self.agents.get(agent)
        if view_of is None:
            return f"unknown agent '{agent}': no such agent in this run"
        if not view_of.spawned or view_of.role in NOT_RUN:
            return f"{agent} is not an agent the swarm runs: nothing to {action}"
        if action == "resume" and view_of.state not in ("wiped", "failed"):
            return (f"{agent} is not wiped (it is {self.shown_state(view_of)}): "
                    "nothing to resume")
        return None

    def _turn_refusal(self, action: str, agent: str | None) -> str | None:
        """Why a cancel (of the turn an agent is running) or a restart (of a cancelled
        or failed agent's turn) would not be carried out; None if it would."""
        if not agent:
            return f"{_a(action)} needs an agent"
        view = self.agents.get(agent)
        if view is None:
            return f"unknown agent '{agent}': no such agent in this run"
        if not view.spawned or view.role in NOT_RUN:
            return f"{agent} is not an agent the swarm runs: nothing to {action}"
        state = self.shown_state(view)
        if action == "cancel":
            if view.state == "cancelled":
                return f"{agent}'s turn is cancelled already: restart it to do it again"
            # (A turn in progress: TURN_STARTED not yet passed, or what its output says.)
            if view.turn_message is None and view.state not in IN_A_TURN:
                return f"{agent} has no turn running (it is {state}): nothing to cancel"
            return None
        if view.state not in ("cancelled", "failed", "stalled"):
            return f"{agent} is not cancelled (it is {state}): nothing to restart"
        return None

    # -- rendering -----------------------------------------------------------------

    def render(self) -> str:
        """The ledger as Markdown; a function of the folded events only."""
        out: list[str] = ["# Sisyphus ledger", ""]
        done, total = self.progress()
        out += [
            f"- **Goal:** {_cell(self.goal or '(no task yet)')}",
            f"- **Phase:** {_cell(self.phase)}" + (
                f" ({_cell(headline(self.phase_reason))})" if self.phase_reason else ""),
            f"- **Progress:** {done}/{total} steps",
            f"- **Started:** {utc(self.task_ts) if self.task_ts else '-'}",
            "",
        ]
        if self.phase == "blocked":
            # The whole reason (a test run's output), its lines kept: shown, not read as
            # Markdown, in a fence no line inside can close.
            out += ["## Blocked", "", *_fenced(self.phase_reason or "(no reason given)"), ""]
        out += ["## Spec", ""]
        gates = self.spec.get("gates", [])
        if gates:
            for gate in gates:
                how = "human approval" if gate.get("human") else _code(" ".join(
                    str(a) for a in gate.get("argv", [])))
                out.append(f"- gate **{_cell(gate.get('name'))}**: {how}")
        else:
            out.append("- (no gates)")
        for key in sorted(k for k in self.spec if k not in ("gates", "workspace")):
            out.append(f"- {_block(key)}: {_cell(self.spec[key])}")
        out.append("")

        out += ["## Plans", ""]
        if not self.plans:
            out += ["(no plan yet)", ""]
        for plan in self.plans.values():
            out.append(f"### {_cell(plan.plan_id)} (revision {_cell(plan.revision)}): "
                       f"{plan.verdict}")
            out.append("")
            out.append(f"Approach: {_cell(plan.approach)}")
            if plan.summary:
                out.append("")
                out.append(_block(plan.summary))
            out.append("")
            out.append("| # | step | proven by | state |")
            out.append("|---|------|-----------|-------|")
            for step in sorted(plan.steps.values(), key=lambda s: s.number):
                out.append(f"| {_cell(step.number)} | {_cell(step.title)} "
                           f"| {_code(step.test, in_table=True)} | {step.state} |")
            out.append("")

        out += ["## Reviews", ""]
        if not self.reviews:
            out += ["(none yet)", ""]
        for review in self.reviews:
            reasons = "; ".join(str(r) for r in review.get("reasons", [])) or "-"
            out.append(f"- round {_cell(review.get('round', 1))}, {_cell(review['plan_id'])}: "
                       f"**{_cell(review['verdict'])}** by {_cell(review['by'])} "
                       f"- {_cell(reasons)}")
        if self.reviews:
            out.append("")

        out += ["## Gates", "", "| gate | result | exit | runs |",
                "|------|--------|------|------|"]
        for gate in self.gates.values():
            result = "-" if gate.passed is None else ("pass" if gate.passed else "FAIL")
            if gate.human and gate.passed is None:
                result = "awaiting approval"
            exit_code = "-" if gate.exit_code is None else _cell(gate.exit_code)
            out.append(f"| {_cell(gate.name)} | {result} | {exit_code} | {gate.runs} |")
        out.append("")

        out += ["## Agents", "", "| agent | role | skill | state | cursor | last active |",
                "|-------|------|-------|-------|--------|-------------|"]
        for agent in sorted(self.agents.values(), key=lambda a: a.name):
            last = utc(agent.last_ts) if agent.last_ts else "-"
            out.append(f"| {_cell(agent.name)} | {_cell(agent.role)} | {_cell(agent.skill or '-')} "
                       f"| {_cell(self.shown_state(agent))} | {_cell(agent.cursor)} | {last} |")
        out.append("")

        out += self._render_spend()

        out += ["## Recoveries", ""]
        if not self.recoveries:
            out.append("- (none)")
        if self.recoveries_count > len(self.recoveries):
            out.append(f"- ... {self.recoveries_count - len(self.recoveries)} earlier ones")
        out += [_recovery(entry) for entry in self.recoveries]
        out.append("")

        out += ["## Last checkpoint", ""]
        if self.last_checkpoint:
            cp = self.last_checkpoint
            out.append(f"- {_block(cp['agent'])}, step {_cell(cp['step'])}, "
                       f"at {utc(cp['ts'])}")
        else:
            out.append("- (none yet)")
        out.append("")

        out += ["## Precedents used", ""]
        if not self.precedents_used:
            out.append("- (none)")
        for memory_id in self.precedents_used:
            title = self.memories.get(memory_id, "(not in this log)")
            out.append(f"- #{_cell(memory_id)}: {_cell(title)}")
        out.append("")

        if self.skipped_count:
            out += ["## Skipped events", "",
                    f"{self.skipped_count} events could not be decoded or applied "
                    "(`sisyphus doctor` lists them):", ""]
            out += [f"- #{offset}: {_cell(why)}" for offset, why in self.skipped.items()]
            if self.skipped_count > len(self.skipped):
                out.append(f"- ... and {self.skipped_count - len(self.skipped)} more")
            out.append("")
        return "\n".join(out)

    def _render_spend(self) -> list[str]:
        """The Spend section: only once something was spent (a run on scripted brains
        has none), each figure from the events alone."""
        spend = self.spend()
        if not spend.run.spent:
            return []
        out = ["## Spend", "", "| agent | role | tokens in | out | cached | cost |",
               "|-------|------|-----------|-----|--------|------|"]
        for name, used in spend.agents.items():
            view = self.agents.get(name)
            out.append(f"| {_cell(name)} | {_cell(view.role if view else '-')} "
                       f"| {tokens_text(used.tokens_in)} | {tokens_text(used.tokens_out)} "
                       f"| {tokens_text(used.tokens_cached)} | {_tilde(cost_text(used))} |")
        run = spend.run
        out.append(f"| **run** | | {tokens_text(run.tokens_in)} | "
                   f"{tokens_text(run.tokens_out)} | {tokens_text(run.tokens_cached)} "
                   f"| {_tilde(cost_text(run))} |")
        if run.cost_is_estimate:
            out += ["", "\\~: estimated from the price table (the backend gave tokens, no cost)"
                    + ("; some models have no price there and count as $0"
                       if run.unpriced else "")]
        out.append("")
        return out


def remove_leftovers(root: Path) -> list[Path]:
    """Delete the temp files that writes interrupted by a crash left under ``root``
    (a symbolic link of that name too, dangling or not: the link goes, never its
    target)."""
    found = [p for p in root.rglob(f".*{TMP_SUFFIX}") if p.is_symlink() or p.is_file()]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def write_atomically(path: Path, data: str | bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename: readers never see
    half a file.

    The temp file is created new beside ``path`` (O_EXCL|O_NOFOLLOW: never through a
    link planted at its name), with ``mode`` less the umask; the rename replaces
    ``path`` itself, a link there included, and never writes through it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue  # taken (or a planted link): draw another name
    raise FileExistsError(f"no free temp name beside {path}")
