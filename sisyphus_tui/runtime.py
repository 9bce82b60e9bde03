"""The Swarm: owns the store, the mail, the ledger and the actors; carries out control
requests appended to the log by any process; tracks liveness.

One follower task tails the whole log: it folds every event into the ledger (and
writes SISYPHUS_LEDGER.md, throttled), starts actors when AGENT_SPAWNED appears, and
notices when the run is done or blocked. Control requests (CONTROL events addressed
to ``swarm``) are the swarm's own inbox, handled from its durable cursor.

Agents thinking on a real backend hold one of its slots while they do (the config's
``concurrency`` caps a backend: beyond it a turn waits, ``queued``); while they hold it
the host watches for a stall (no output for the role's ``stall_s``); ``cancel`` stops a
turn (its agent asked to stop, then made to), ``restart`` does it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from sisyphus_tui.actors import ROLES, SisyphusActor
from sisyphus_tui.actors.base import BootInfo
from sisyphus_tui.agents.config import BrainConfig, RunConfig
from sisyphus_tui.brains import Brain, make_brain
from sisyphus_tui.errors import HostFault, SisyphusError
from sisyphus_tui.events import encode_payload
from sisyphus_tui.faults import describe, is_passing, retrying
from sisyphus_tui.ledger import (
    FAULT_BLOCK,
    FINAL_PHASES,
    LEDGER_FILE,
    Ledger,
    remove_leftovers,
    write_atomically,
)
from sisyphus_tui.mail import SwarmMail, check_agent_name, registration_key
from sisyphus_tui.narrative import line as story_line
from sisyphus_tui.process import Child, watch_children
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event, EventStore
from sisyphus_tui.stream.lease import HostLease

if TYPE_CHECKING:
    from sisyphus_tui.skills import Skill

SWARM = "swarm"
HUMAN = "human"
LEDGER_WRITE_INTERVAL_S = 0.2
BUDGET_WARN_AT = 0.8  # of a budget's limit: BUDGET warn
BUDGET_REREAD_S = 2.0  # how often a run the budget paused re-reads the config
# What resets an agent's silence: it says something, or asks a person (the wait for the
# answer is not the agent's), or has its answer.
SPEAKS = frozenset({"AGENT_OUTPUT", "TURN_STARTED", "PERMISSION_REQUESTED",
                    "PERMISSION_ANSWERED"})
STALL_CHECK_MAX_S = 5.0  # how long, at most, between two looks for a stalled agent
# The agents the run cannot go on without: if one fails, the host stops (loudly, and
# resumably), instead of waiting for ever for what it will never send.
ESSENTIAL = ("kernel", "planner", "validator", "executor")
# The events the headless output tells the story with (the rest is bookkeeping, or
# what an agent says, which the TUI and ``sisyphus events`` show).
STORY = frozenset({"PHASE", "AGENT_SPAWNED", "PLAN_INIT", "REVIEW", "FILE_EDIT", "TEST_FAIL",
                   "TEST_PASS", "GATE_RESULT", "CONTEXT_WIPED", "RESUMED", "RUN_RESUMED",
                   "AGENT_FAILED", "AGENT_STALE", "MEMORY_STORED", "PERMISSION_REQUESTED",
                   "PERMISSION_ANSWERED", "AGENT_QUEUED", "AGENT_STALLED", "AGENT_CANCELLED",
                   "BUDGET"})


def _say_to_stderr(text: str) -> None:
    print(f"sisyphus: {printable(text)}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Trigger:
    """``--wipe AGENT@STEP``: wipe AGENT when step STEP (or a phase) begins."""

    agent: str
    at: str

    @classmethod
    def parse(cls, text: str) -> Trigger:
        """Parse ``executor@3`` or ``planner@validate``."""
        agent, sep, at = text.partition("@")
        if not sep or not agent or not at:
            raise SisyphusError(f"invalid --wipe {text!r}: use AGENT@STEP, e.g. executor@2 "
                                "or planner@validate")
        return cls(agent, at)

    def matches(self, event: Event) -> bool:
        """Whether ``event`` is the boundary this trigger waits for."""
        if self.at.isdigit():
            data = event.payload.get("data")
            return (event.type == "MESSAGE" and event.payload.get("kind") == "execute_step"
                    and isinstance(data, dict) and str(data.get("step")) == self.at)
        return event.type == "PHASE" and event.payload.get("phase") == self.at


@dataclass
class _Thinking:
    """An agent thinking on a real backend now (it holds one of the backend's slots)."""

    message: int
    backend: str
    began: float  # (monotonic) when it had its slot
    stall_s: float
    flagged: float | None = None  # the last output before the silence already said
    stalls: int = 0


@dataclass
class _Slots:
    """One backend's turns: those running, and those waiting for a slot (first come,
    first served)."""

    running: set[str] = field(default_factory=set)
    waiting: deque[tuple[str, asyncio.Future[None]]] = field(default_factory=deque)


def how_cancelled(children: list[Child]) -> str:
    """AGENT_CANCELLED's ``how`` for what a cancelled turn was running: the last step
    the cancel needed (SIGKILL, SIGINT, or the protocol's own cancel), ``none`` if no
    process of its was running (a turn waiting for its slot)."""
    sent = {signum for child in children for signum in child.signalled}
    if signal.SIGKILL in sent:
        return "sigkill"
    if sent:
        return "sigint"
    return "protocol" if children else "none"


class ActorHandle(Protocol):
    """How the swarm holds a running actor: an asyncio task by default, a Textual worker
    (in its own worker group) inside the app."""

    def cancel(self) -> None:
        """Stop it wherever it is (a context wipe)."""

    def done(self) -> bool:
        """Whether it has ended."""

    async def wait(self) -> None:
        """Wait until it has ended, whatever the reason."""


class TaskHandle:
    """An actor run as a plain asyncio task."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task

    @classmethod
    def start(cls, coroutine: Coroutine[Any, Any, None], name: str) -> TaskHandle:
        """Start ``coroutine`` as a task called ``name``."""
        return cls(asyncio.create_task(coroutine, name=name))

    def cancel(self) -> None:
        self.task.cancel()

    def done(self) -> bool:
        return self.task.done()

    async def wait(self) -> None:
        with contextlib.suppress(BaseException):
            await self.task


class Swarm:
    """Runs the actors of one log, in this process, until the run is done or blocked."""

    def __init__(self, store: EventStore, workspace: Path, *, brain: str = "scripted",
                 config: RunConfig | None = None,
                 speed: float = 0.0, stale_after_s: float = 120.0,
                 wipes: tuple[Trigger, ...] = (), out: Callable[[str], None] | None = None,
                 on_fault: Callable[[str], None] = _say_to_stderr,
                 lease: HostLease | None = None, write_ledger: bool = True,
                 run_actor: Callable[[Coroutine[Any, Any, None], str], ActorHandle] | None
                 = None) -> None:
        self.store = store
        self.mail = SwarmMail(store)
        self.ledger = Ledger()
        self.workspace = workspace
        self.speed = speed
        # Which brain each role thinks with: the workspace's config, or ``brain`` for all.
        self.config = config if config is not None else RunConfig(brain=BrainConfig(
            backend=brain))
        self.stale_after_s = stale_after_s
        self.wipes = wipes
        self.out = out
        self.on_fault = on_fault
        self.lease = lease
        self.write_ledger = write_ledger
        self.stopped_by: HostFault | None = None
        self.actors: dict[str, SisyphusActor] = {}
        self.tasks: dict[str, ActorHandle] = {}
        self.run_actor: Callable[[Coroutine[Any, Any, None], str], ActorHandle] = (
            run_actor or TaskHandle.start)
        self._running = asyncio.Event()
        self._running.set()
        self._finished = asyncio.Event()
        self._ledger_moved = asyncio.Event()
        self._ledger_dirty = asyncio.Event()
        self._started = False
        self._stopping = False
        self._follower_gone = False
        self._followed = 0  # the last event the follower has folded and reacted to
        self._live_from = 0
        self._stale_flagged: dict[str, int] = {}
        self._memory: Any = None
        self._memory_lock = asyncio.Lock()
        self._helpers: list[asyncio.Task[None]] = []
        self._budget_said: set[str] = set()  # the budget keys known to be in the log
        self._budget_pause: str | None = None  # the key of a pause the budget asked for
        self._slots: dict[str, _Slots] = {}
        self._thinking: dict[str, _Thinking] = {}
        self._thoughts: Counter[tuple[str, int]] = Counter()  # (agent, message): thinks
        self._spoke: dict[str, float] = {}  # agent -> (monotonic) its last live output
        self._stall_wake = asyncio.Event()
        self._children: dict[str, list[Child]] = {}  # the processes each actor started
        self._cancelled: set[str] = set()  # cancelled here, not restarted yet
        # A cancel or restart in progress, by agent: its own task, so the grace periods
        # of a cancel never hold the other requests; one agent's run in order.
        self._steering: dict[str, asyncio.Task[None]] = {}

    # -- what actors see (SwarmContext) ---------------------------------------------

    async def wait_until_running(self) -> None:
        """Return when the swarm is not paused."""
        await self._running.wait()

    async def ledger_at(self, offset: int) -> Ledger:
        """The ledger once it has folded every event up to ``offset``."""
        while self.ledger.offset < offset:
            if self._follower_gone:
                raise HostFault(f"the swarm's follower stopped at offset {self.ledger.offset}")
            moved = self._ledger_moved
            await moved.wait()
        return self.ledger

    async def memory_find(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """memory-lane's best precedents for ``query``, as dicts."""
        lane = await self._lane()
        found = await lane.memory_find(query, limit)
        return [{"id": p.id, "title": p.title, "what": p.what, "outcome": p.outcome,
                 "tags": list(p.tags), "score": p.score} for p in found]

    @contextlib.asynccontextmanager
    async def agent_turn(self, agent: str, backend: str, message: int
                         ) -> AsyncIterator[None]:
        """Hold one of ``backend``'s slots while ``agent`` thinks on it: beyond the run's
        cap (``concurrency``) the turn waits its turn and says so once (AGENT_QUEUED:
        the agent shows ``queued``); while it holds the slot the host watches it for a
        stall (AGENT_STALLED after its role's ``stall_s`` without output)."""
        cap = self.config.concurrency.get(backend)
        slots = self._slots.setdefault(backend, _Slots())
        if cap is not None and (len(slots.running) >= cap or slots.waiting):
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            slots.waiting.append((agent, granted))
            try:
                await self._append("AGENT_QUEUED", {"agent": agent, "backend": backend,
                                                    "running": len(slots.running),
                                                    "cap": cap}, actor=SWARM)
                await granted
            except BaseException:
                if granted.done() and not granted.cancelled():
                    self._free_slot(backend, agent)  # (granted as it was cancelled)
                else:
                    granted.cancel()
                    with contextlib.suppress(ValueError):
                        slots.waiting.remove((agent, granted))
                raise
        else:
            slots.running.add(agent)
        self._thoughts[(agent, message)] += 1
        actor = self.actors.get(agent)
        config = getattr(actor.brain, "config", None) if actor is not None else None
        stall_s = config.stall_s if isinstance(config, BrainConfig) else \
            self.brain_for(actor.role if actor is not None else "agent").stall_s
        self._thinking[agent] = _Thinking(message, backend, time.monotonic(), stall_s)
        self._stall_wake.set()
        try:
            yield
        finally:
            self._thinking.pop(agent, None)
            self._free_slot(backend, agent)

    def _free_slot(self, backend: str, agent: str) -> None:
        """``agent`` is done with its slot: the next turn waiting for one has it."""
        slots = self._slots[backend]
        slots.running.discard(agent)
        cap = self.config.concurrency.get(backend)
        while slots.waiting and (cap is None or len(slots.running) < cap):
            waiter, granted = slots.waiting.popleft()
            if not granted.done():
                slots.running.add(waiter)
                granted.set_result(None)

    def skill_role(self, skill: str) -> tuple[str, str]:
        """The role and default thinking of a skill."""
        found = self.skill(skill)
        return found.role, found.thinking

    def skill(self, name: str) -> Skill:
        """The skill called ``name``, the workspace's own first."""
        from sisyphus_tui.skills import get_skill

        return get_skill(name, self.workspace)

    async def _lane(self) -> Any:
        # Actors ask at the same moment: open one lane, not one each (a lane left
        # unclosed would keep its connection thread, and the process, alive).
        async with self._memory_lock:
            if self._memory is None:
                from sisyphus_tui.memory import MemoryLane
                from sisyphus_tui.stream.sqlite import SQLiteStore

                if not isinstance(self.store, SQLiteStore):
                    raise SisyphusError("memory-lane needs the SQLite backend")
                self._memory = await MemoryLane.open(self.store)
        return self._memory

    # -- running ----------------------------------------------------------------

    def say(self, line: str) -> None:
        """A progress line for a person (headless runs print them), shown literally:
        lines name agents, gates and reasons from the log."""
        if self.out is not None:
            self.out(printable(line))

    def fault(self, text: str) -> None:
        """A fault being retried, or one that stops the host: always said (to stderr, or
        the TUI's notifications), since the log may not take it at that moment."""
        self.on_fault(text)

    def stop_on_fault(self, reason: str) -> None:
        """End the run loudly, not as a verdict: the same command resumes it."""
        if self.stopped_by is None:
            self.stopped_by = HostFault(reason)
            self.fault(f"stopping: {reason}")
        self._finished.set()

    async def _append(self, type: str, payload: dict[str, Any], **fields: Any) -> int:
        """The swarm's own appends: a fault that passes is retried, with a backoff."""
        def said(exc: BaseException, tries: int, delay: float) -> None:
            if tries & (tries - 1) == 0:  # 1, 2, 4, 8, ...
                self.fault(f"cannot append {type} ({describe(exc)}); retry {tries} in "
                           f"{delay:.1f}s")

        return await retrying(lambda: self.store.append(type, payload, **fields), said)

    def _supervised(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]
                    ) -> asyncio.Task[None]:
        """Run a helper of the swarm as a task that a fault that passes restarts (each
        helper resumes from durable state); any other error ends it, and the run."""
        def said(exc: BaseException, tries: int, delay: float) -> None:
            self.fault(f"the swarm's {name}: {describe(exc)}; restarting it in {delay:.1f}s")

        task = asyncio.create_task(retrying(body, said), name=f"swarm-{name}")
        self._helpers.append(task)
        return task

    async def run(self) -> Ledger:
        """Run until the task is done or blocked; returns the final ledger. Only one
        process hosts a swarm: without a ``lease`` taken by the caller, the run takes
        one (HostBusy, naming the holder, if another process has it)."""
        if self.lease is not None:
            return await self._run()
        self.lease = await self.store.host_lease()
        try:
            return await self._run()
        finally:
            self.lease.release()
            self.lease = None

    async def _run(self) -> Ledger:
        await self.mail.init(SWARM, role=SWARM)
        await self.mail.init(HUMAN, role=HUMAN)
        if self.workspace.is_dir():
            for path in await asyncio.to_thread(remove_leftovers, self.workspace):
                self.say(f"removed {path.name}, left by an interrupted write")
        head = await self.store.head()
        self._live_from = head + 1
        follower = self._supervised("follower", self._follow)
        follower.add_done_callback(self._follower_ended)
        try:
            await self._start(head)
            finished = asyncio.create_task(self._finished.wait())
            try:
                # A helper that dies (the follower, control) ends the run loudly, not
                # leaving it hanging.
                await asyncio.wait([finished, *self._helpers],
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                finished.cancel()
            for helper in self._helpers:
                if helper.done() and not helper.cancelled() and helper.exception():
                    raise HostFault(f"the swarm's {helper.get_name()} failed: "
                                    f"{describe(helper.exception())}")  # type: ignore[arg-type]
        finally:
            await self.shutdown()
        if self.stopped_by is not None:
            raise self.stopped_by
        return self.ledger

    async def _start(self, head: int) -> None:
        """Read the log up to ``head``, lift a block that was a fault, start the actors
        and the helpers (or, for a finished run, nothing)."""
        await self.ledger_at(head)
        if self.ledger.phase == "blocked" and FAULT_BLOCK.match(self.ledger.phase_reason) \
                and self.ledger.phase_before in ("plan", "validate", "execute", "gates"):
            blocked_by = self.ledger.phase_reason
            resumed_at = await self._append("PHASE", {
                "phase": self.ledger.phase_before,
                "reason": f"resumed: the block was a fault, not a verdict "
                          f"({blocked_by[:200]})"}, actor=SWARM)
            await self.ledger_at(resumed_at)
            head = resumed_at
            self.say(f"the run was blocked by a fault ({blocked_by[:100]}): resuming it in "
                     f"phase {self.ledger.phase}")
        if self.ledger.paused:
            self._running.clear()
        if self.ledger.phase in FINAL_PHASES:
            self._finished.set()
        else:
            if any(a.cursor for a in self.ledger.agents.values()):
                await self._record_resume(head)
            self._started = True
            # A failed agent is started again too: a new host is a new attempt, and
            # what made it fail (a fault, a bug since fixed) may have passed.
            # (A cancelled agent waits for its restart, whichever host it was cancelled in.)
            for agent in list(self.ledger.agents.values()):
                if agent.role in ROLES and agent.state not in ("done", "registered",
                                                               "cancelled"):
                    self.start_actor(agent.name, agent.role, agent.skill,
                                     resumed=agent.cursor > 0 or agent.state in ("wiped",
                                                                                 "failed"))
            self._supervised("control", self._control)
            self._supervised("liveness", self._liveness)
            self._supervised("budget", self._budget_timer)
            # A pause the budget asked for under a host before this one still holds:
            # this host lifts it too once the budget is raised.
            self._budget_pause = await self._budget_pause_in_force()
            await self._watch_budget()  # (a budget lowered since, or a pause not yet made)
            self._supervised("stalls", self._stalls)
        if self.write_ledger:
            self._supervised("ledger", self._write_ledger_loop)

    async def _record_resume(self, head: int) -> None:
        """Say, and put on the record (RUN_RESUMED), that this host picks up a run an
        interruption left half done. Keyed by where the log stood: a host that dies
        at once leaves the next one the same place, and the record is written once."""
        at = head
        last = self.ledger.last_interruption
        if last is not None and last["offset"] == head:
            at = last["at"]  # nothing happened since the last host's record
        done, total = self.ledger.progress()
        await self._append("RUN_RESUMED", {"at": at, "phase": self.ledger.phase,
                                           "done": done, "total": total},
                           actor=SWARM, key=f"run-resumed:{at}")
        self.say(f"resuming at offset {at}: phase {self.ledger.phase}, {done}/{total} steps "
                 "done")

    def _follower_ended(self, task: asyncio.Task[None]) -> None:
        # Whoever waits for the ledger must not wait for a follower that is gone.
        self._follower_gone = True
        self._ledger_moved.set()

    async def shutdown(self) -> None:
        """Stop every actor and helper; bring the ledger file up to the head."""
        self._stopping = True  # no actor starts from here on (a spawn folded, a resume)
        for task in self._helpers:
            if task.get_name() == "swarm-control":
                task.cancel()
        for steering in list(self._steering.values()):
            steering.cancel()
        for handle in list(self.tasks.values()):
            handle.cancel()
        for handle in list(self.tasks.values()):
            await handle.wait()
        try:
            if self.ledger.phase in FINAL_PHASES:
                # The run is over: its agents are too (keys: a restart stops them once).
                stopped = [{"type": "AGENT_STOPPED", "actor": SWARM, "key": f"stopped:{name}",
                            "payload": {"agent": name,
                                        "reason": f"the run is {self.ledger.phase}"}}
                           for name, view in sorted(self.ledger.agents.items())
                           if view.role in ROLES and view.state not in ("done", "failed")]
                if stopped:
                    # If the log takes it not now, the next host writes it (the keys).
                    with contextlib.suppress(Exception):
                        await self.store.append_many(stopped)
            # The ledger file up to the head, if the follower gets there in time.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ledger_at(await self.store.head()), 10)
        finally:
            for task in self._helpers:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            if self.write_ledger:
                try:
                    self._write_ledger_file()
                except OSError as exc:
                    self.fault(f"cannot write the ledger file: {describe(exc)}")
            if self._memory is not None:
                await self._memory.close()

    def start_actor(self, name: str, role: str, skill: str | None, *, resumed: bool) -> None:
        """Start (or restart) an actor as an asyncio task; its failure stays its own."""
        if self._stopping or (name in self.tasks and not self.tasks[name].done()):
            return
        actor = self.actors.get(name)
        if actor is None or not resumed:
            # The brain it was spawned with, recorded in the log: a resume (in another
            # process, with another default) rebuilds the same one.
            actor = ROLES[role](self, name, self._brain_of(name, role), skill=skill)
            self.actors[name] = actor
        self.tasks[name] = self.run_actor(self._actor_main(actor, resumed), name)

    def brain_for(self, role: str) -> BrainConfig:
        """The brain an agent of ``role`` is spawned with."""
        return self.config.for_role(role)

    def _brain_of(self, name: str, role: str) -> Brain:
        """The brain ``name`` was spawned with, as AGENT_SPAWNED recorded it (a resume
        in another host, with another default, rebuilds the same one); its
        environment's values come from the config as it is now."""
        view = self.ledger.agents.get(name)
        current = self.brain_for(role)
        if view is None or not view.brain:
            return make_brain(current.backend, current)
        config = current if current.backend == view.brain else None
        if view.brain_config is not None:
            with contextlib.suppress(ValidationError):  # (an older version's record)
                config = BrainConfig.from_record(view.brain_config, current)
        return make_brain(view.brain, config)

    async def _actor_main(self, actor: SisyphusActor, resumed: bool) -> None:
        """An actor's whole life: a fault that passes reboots it from its cursor and
        checkpoint (its turns are idempotent); any other error is recorded; and
        whatever ends it, the swarm hears of it (an essential agent's end stops the
        host loudly, never leaving it waiting)."""
        # What its coding agents run (in this task and the ones it starts): a cancel
        # says how they were ended.
        self._children[actor.name] = watch_children()
        try:
            await self._serve_retrying(actor, resumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one failing actor must not take the others down
            try:
                await self._record_failure(actor, exc)
            except Exception as again:
                self.stop_on_fault(f"{actor.name} failed ({describe(exc)}) and its failure "
                                   f"could not be recorded ({describe(again)})")
        except BaseException as exc:
            self.stop_on_fault(f"{actor.name} ended: {type(exc).__name__}")
            raise

    async def _serve_retrying(self, actor: SisyphusActor, resumed: bool) -> None:
        async def life() -> None:
            nonlocal resumed
            info: BootInfo = await actor.boot()
            if resumed:
                await self.store.append("RESUMED", {
                    "agent": actor.name, "cursor": info.cursor, "reread": info.reread,
                    "duration_ms": round(info.duration_ms, 3)}, actor=actor.name)
            resumed = True  # a fault from here on: the next life is a resume
            await actor.serve(info)

        def said(exc: BaseException, tries: int, delay: float) -> None:
            self.fault(f"{actor.name}: {describe(exc)}; resuming from its checkpoint in "
                       f"{delay:.1f}s (retry {tries})")

        await retrying(life, said)

    async def _record_failure(self, actor: SisyphusActor, exc: Exception) -> None:
        # An agent's own one-line reason is said as it is; anything else with its type.
        error = str(exc) if getattr(exc, "not_the_message", False) else \
            f"{type(exc).__name__}: {exc}"
        await self._append("AGENT_FAILED", {"agent": actor.name, "error": error,
                                            "message": actor.handling}, actor=SWARM)
        if actor.name != "kernel" and await self.mail.is_registered("kernel"):
            await self.mail.send("kernel", {"kind": "agent_failed", "text": error,
                                            "data": {"agent": actor.name}}, sender=SWARM)
        view = self.ledger.agents.get(actor.name)
        if actor.name == "kernel" or (actor.name in ESSENTIAL and view is not None
                                      and view.parent == "kernel"):
            self.stop_on_fault(f"{actor.name} failed: {error}")

    async def wipe(self, name: str, *, hold: bool = False) -> None:
        """A context wipe: cancel the actor wherever it is, forget its memory, record
        what was lost; unless ``hold``, it resumes at once from its checkpoint."""
        actor = self.actors.get(name)
        if actor is None:
            raise SisyphusError(self.ledger.refusal("wipe", name)
                                or f"no agent {name!r} runs in this host: nothing to wipe")
        handle = self.tasks.get(name)
        if handle is not None:
            handle.cancel()
            await handle.wait()
        lost = actor.wipe()
        # Appending through the same writer queue also waits out a commit the wiped
        # turn had already queued, so the resumed actor reads the true cursor.
        await self._append("CONTEXT_WIPED", {"agent": name, "lost": lost}, actor=SWARM)
        if not hold:
            await self.resume(name)

    async def resume(self, name: str) -> None:
        """Boot a wiped (or failed) actor again from its cursor and checkpoint; an
        agent that runs, or none that could, is refused (SisyphusError, saying why)."""
        view = self.ledger.agents.get(name)
        if view is None or view.role not in ROLES:
            raise SisyphusError(self.ledger.refusal("resume", name)
                                or f"{name} is not an agent the swarm runs: nothing to resume")
        handle = self.tasks.get(name)
        if handle is not None and not handle.done():
            # (Its own task, not the ledger, says it runs: a wipe just carried out may
            # not be folded yet.)
            state = self.ledger.shown_state(view) if view.state not in ("wiped", "failed") \
                else "running"
            raise SisyphusError(f"{name} is not wiped (it is {state}): nothing to resume")
        self.start_actor(name, view.role, view.skill, resumed=True)

    async def cancel(self, name: str) -> str:
        """Stop ``name``'s turn: its task is cancelled, so its coding agent is asked to
        stop (the protocol's cancel, then SIGINT, then SIGKILL of all it runs, each
        after a grace period); AGENT_CANCELLED says which step it took. The message
        stays unhandled (no commit, the cursor where it was) and the agent does nothing
        until ``restart``. An agent with no turn running is refused (SisyphusError).
        Returns how it ended."""
        actor = self.actors.get(name)
        handle = self.tasks.get(name)
        view = self.ledger.agents.get(name)
        if actor is None or handle is None or handle.done():
            raise SisyphusError(self.ledger.refusal("cancel", name)
                                or f"{name} has no turn running: nothing to cancel")
        message = actor.handling
        if message is None or message <= actor.cursor:
            state = self.ledger.shown_state(view) if view is not None else "idle"
            raise SisyphusError(f"{name} has no turn running (it is {state}): nothing "
                                "to cancel")
        running = [child for child in self._children.get(name, []) if child.returncode is None]
        handle.cancel()
        await handle.wait()
        # A write through the store's one writer (the swarm's cursor, where it is): a
        # commit the turn had queued before the cancel reached it is durable after it.
        await self.store.append_many([], cursor=(SWARM, await self.store.cursor(SWARM)))
        if await self.store.cursor(name) >= message:
            # Its turn was committing as the cancel came: done, nothing to redo.
            self.start_actor(name, actor.role, actor.skill, resumed=True)
            raise SisyphusError(f"{name}'s turn on message {message} had ended: nothing "
                                "to cancel")
        self._cancelled.add(name)
        how = how_cancelled(running)
        await self._append("AGENT_CANCELLED", {"agent": name, "message": message,
                                               "how": how}, actor=SWARM)
        return how

    async def restart(self, name: str) -> None:
        """Do a cancelled (or failed) agent's turn again, from its checkpoint: the same
        message, the workspace as the turn found it (the turn is in doubt, and redone
        as one a crash interrupted). An agent that runs is refused (SisyphusError)."""
        view = self.ledger.agents.get(name)
        if view is None or view.role not in ROLES:
            raise SisyphusError(self.ledger.refusal("restart", name)
                                or f"{name} is not an agent the swarm runs: nothing to "
                                "restart")
        handle = self.tasks.get(name)
        if handle is not None and not handle.done() and view.state == "stalled":
            await self.cancel(name)  # (a stuck turn: stopped first, then done again)
        if handle is not None and not handle.done():
            state = self.ledger.shown_state(view) if view.state != "cancelled" \
                else "running"
            raise SisyphusError(f"{name} is not cancelled (it is {state}): nothing to "
                                f"restart (`sisyphus cancel {name}` first)")
        if name not in self._cancelled and view.state not in ("cancelled", "failed"):
            raise SisyphusError(f"{name} is not cancelled (it is "
                                f"{self.ledger.shown_state(view)}): nothing to restart")
        self._cancelled.discard(name)
        self.start_actor(name, view.role, view.skill, resumed=True)

    # -- the follower -----------------------------------------------------------

    async def _follow(self) -> None:
        # From the last event it handled: a follower restarted after a fault reacts to
        # an event it had folded but not reacted to, and folds nothing twice.
        async for event in self.store.tail(self._followed + 1):
            problem = None
            if event.offset > self.ledger.offset:
                problem = self.ledger.apply(event)
                moved, self._ledger_moved = self._ledger_moved, asyncio.Event()
                moved.set()
                self._ledger_dirty.set()
            if problem is not None:
                self._followed = event.offset
                # Flagged and skipped: one bad event never stops the swarm.
                self.fault(f"skipped event {event.offset}: {problem}")
                continue
            if event.offset >= self._live_from:
                self._report(event)
                if event.type in SPEAKS:
                    self._spoke[str(event.payload.get("agent"))] = time.monotonic()
            if self._started:
                await self._react(event)
            # (A final phase in the log's past is judged by run() once it is read: a
            # block that was a fault is lifted there.)
            if event.type == "PHASE" and event.payload["phase"] in FINAL_PHASES \
                    and event.offset >= self._live_from:
                self._finished.set()
            self._followed = event.offset

    async def _react(self, event: Event) -> None:
        if event.type == "AGENT_SPAWNED":
            p = event.payload
            if p["role"] in ROLES:
                self.start_actor(p["agent"], p["role"], p.get("skill"), resumed=False)
        for trigger in self.wipes:
            if trigger.matches(event):
                await self._append("CONTROL", {"action": "wipe", "agent": trigger.agent},
                                   actor=SWARM, to=SWARM, key=f"wipe:{trigger.agent}@{trigger.at}")
        if event.type == "AGENT_OUTPUT" and event.payload.get("kind") == "usage":
            await self._watch_budget()

    def _report(self, event: Event) -> None:
        if event.type in STORY:
            self.say(story_line(event))
        if event.type == "PERMISSION_REQUESTED":
            agent = event.payload.get("agent")
            self.say(f"  answer it: sisyphus answer {agent} allow|deny (or in the TUI)")

    # -- control ----------------------------------------------------------------

    async def _control(self) -> None:
        cursor = await self.store.cursor(SWARM)
        async for event in self.store.tail(cursor + 1, to=SWARM):
            if event.type == "CONTROL":
                try:
                    # Checked whole first: a request stored past the model (an older
                    # version, another program, bit rot) is refused like a bad one.
                    encode_payload(event.type, event.payload)
                    await self._carry_out(event)
                except Exception as exc:
                    if is_passing(exc):
                        raise  # tried again when the helper restarts
                    # A request that cannot be carried out is answered, not retried.
                    await self._refuse(event, exc)
            await self.mail.ack(SWARM, event.offset)

    async def _refuse(self, event: Event, exc: Exception) -> None:
        """Say, on stderr and on the record, why a control request was not carried out."""
        why = describe(exc) if isinstance(exc, SisyphusError) else \
            f"{type(exc).__name__}: {describe(exc)}"
        self.say(f"control request {event.offset} refused: {why}")
        await self._append("STATUS_UPDATE", {
            "agent": SWARM, "state": "refused",
            "detail": f"control {event.offset}: {why}"[:500]}, actor=SWARM)

    async def _carry_out(self, event: Event) -> None:
        p = event.payload
        action = p["action"]
        if action == "wipe":
            await self.wipe(p["agent"], hold=p.get("hold", False))
        elif action == "resume":
            await self.resume(p["agent"])
        elif action == "pause":
            self._running.clear()
            self.say("swarm paused")
        elif action == "unpause":
            await self._reread_budget()  # (a budget raised before the unpause counts)
            self._budget_pause = None
            self._running.set()
            self.say("swarm running")
        elif action == "approve":
            await self.mail.send("kernel", {"kind": "approve", "text": f"approve {p['gate']}",
                                            "data": {"gate": p["gate"]}},
                                 sender=event.actor or HUMAN, key=f"approve:{event.offset}")
        elif action == "spawn":
            taken = await self.store.find_key(registration_key(p["agent"]))
            if taken is not None and taken < event.offset:
                # (One registered after the request is this request's own, carried out
                # before a restart: spawning again is a no-op, not a refusal.)
                raise SisyphusError(f"an agent named {p['agent']} already exists")
            await self.spawn(p["skill"], p["agent"], p.get("prompt", ""),
                             thinking=p.get("thinking"), parent=p.get("parent") or HUMAN)
        elif action == "stop":
            # Acked first: the run's end cancels this loop, and a stop the next host
            # read again would end it at once.
            await self.mail.ack(SWARM, event.offset)
            self._finished.set()
        elif action in ("cancel", "restart"):
            self._steer(event)

    def _steer(self, event: Event) -> None:
        """Carry out a cancel or restart in a task of its own (after the agent's previous
        one): refused, it is answered on the record as any control request is."""
        agent, action = str(event.payload["agent"]), str(event.payload["action"])
        before = self._steering.get(agent)

        async def carry() -> None:
            if before is not None:
                with contextlib.suppress(BaseException):
                    await before

            async def attempt() -> None:
                if action == "cancel":
                    await self.cancel(agent)
                else:
                    await self.restart(agent)

            def said(exc: BaseException, tries: int, delay: float) -> None:
                self.fault(f"{action} of {agent} failed ({describe(exc)}); retry {tries} "
                           f"in {delay:.1f}s")

            try:
                await retrying(attempt, said)
            except Exception as exc:
                await self._refuse(event, exc)
            finally:
                if self._steering.get(agent) is task:
                    del self._steering[agent]

        task = asyncio.create_task(carry(), name=f"swarm-{action}-{agent}")
        self._steering[agent] = task

    async def skill_agent(self, skill_name: str, agent_name: str, prompt: str,
                          run_in_background: bool = True, thinking: str | None = None,
                          *, parent: str = HUMAN, timeout_s: float = 300.0) -> str:
        """Spawn a specialised agent by skill. In the background, return its name at once
        (its result arrives in ``parent``'s inbox as a message); in the foreground, wait
        for that result and return its text."""
        head = await self.store.head()
        await self.spawn(skill_name, agent_name, prompt, thinking=thinking, parent=parent)
        if run_in_background:
            return agent_name

        async def result() -> str:
            async for reply in self.store.tail(head + 1, to=parent):
                data = reply.payload.get("data", {})
                if reply.payload.get("kind") == "result" and data.get("agent") == agent_name:
                    return str(reply.payload.get("text", ""))
            raise AssertionError("unreachable: a tail never ends")

        try:
            return await asyncio.wait_for(result(), timeout_s)
        except TimeoutError:
            raise SisyphusError(f"no result from {agent_name!r} within {timeout_s:g}s") from None

    async def spawn(self, skill: str, name: str, prompt: str, *, thinking: str | None,
                    parent: str) -> None:
        """Spawn an agent by skill (events with keys: spawning twice spawns once)."""
        check_agent_name(name)
        role, default_thinking = self.skill_role(skill)
        brain = self.brain_for(role)
        await self.store.append_many([
            {"type": "AGENT_SPAWNED", "actor": SWARM, "key": f"spawn:{name}",
             "payload": {"agent": name, "role": role, "skill": skill, "parent": parent,
                         "thinking": brain.thinking or thinking or default_thinking,
                         "brain": brain.backend, "brain_config": brain.record()}},
            {"type": "AGENT_REGISTERED", "actor": name, "key": f"agent:{name}",
             "payload": {"agent": name, "role": role}},
            *([{"type": "MESSAGE", "actor": parent, "to": name, "key": f"task:{name}",
                "payload": {"kind": "task", "text": prompt, "data": {"parent": parent}}}]
              if prompt else []),
        ])

    # -- the budget ---------------------------------------------------------------

    def _budget_limits(self) -> list[tuple[str | None, float, float]]:
        """(agent, or None for the run; its limit; what it spent) for each limit the
        config's ``[budget]`` sets."""
        budget, spend = self.config.budget, self.ledger.spend()
        limits: list[tuple[str | None, float, float]] = []
        if budget.run_usd:
            limits.append((None, budget.run_usd, spend.run.cost_usd))
        if budget.agent_usd:
            limits += [(name, budget.agent_usd, used.cost_usd)
                       for name, used in spend.agents.items()]
        return limits

    async def _budget_once(self, key: str, type: str, payload: dict[str, Any],
                           **fields: Any) -> bool:
        """Append a budget event once (keyed); whether it is new."""
        if key in self._budget_said:
            return False
        if await self.store.find_key(key) is not None:
            self._budget_said.add(key)
            return False  # (a host before this one said it)
        await self._append(type, payload, actor=SWARM, key=key, **fields)
        self._budget_said.add(key)
        return True

    async def _watch_budget(self) -> None:
        """BUDGET ``warn`` at 80% of a limit, ``exceeded`` at 100%, each once per limit
        (keyed by its amount: a raised budget is watched afresh). At 100% the run
        pauses (CONTROL pause, keyed the same way, and at once here): the turns in hand
        finish, nothing new starts. An agent over its own budget pauses the whole run
        too. ``sisyphus unpause`` goes on past that limit: it is not paused for again."""
        for agent, limit, spent in self._budget_limits():
            scope = f"{agent or 'run'}:{limit:g}"
            payload = {"agent": agent, "spent_usd": round(spent, 6), "limit_usd": limit}
            if spent >= BUDGET_WARN_AT * limit:
                await self._budget_once(f"budget:warn:{scope}", "BUDGET",
                                        {"level": "warn", **payload})
            if spent < limit:
                continue
            await self._budget_once(f"budget:exceeded:{scope}", "BUDGET",
                                    {"level": "exceeded", **payload})
            whose = f"{agent}'s budget" if agent else "the run's budget"
            reason = (f"budget: {whose} is spent (${spent:.4f} of ${limit:g}): the run "
                      "pauses; raise it in .sisyphus/config.toml, or `sisyphus unpause` "
                      "to go on past it")
            key = f"budget-pause:{scope}"
            if await self._budget_once(key, "CONTROL", {"action": "pause", "reason": reason},
                                       to=SWARM):
                self._running.clear()  # (the control loop says so, and pauses again)
                self._budget_pause = key
                self.fault(reason)

    async def _budget_pause_in_force(self) -> str | None:
        """The key of the budget's pause the run is held by (the last pause, not
        unpaused since, was the budget's), else None."""
        if not self.ledger.paused:
            return None
        offsets = await self.store.match_offsets(types=["CONTROL"])
        for event in reversed(await self.store.read_offsets(offsets[-200:])):
            action = event.payload.get("action")
            if action == "unpause":
                return None
            if action == "pause":
                key = event.key or ""
                return key if key.startswith("budget-pause:") else None
        return None

    async def _reread_budget(self) -> bool:
        """Take the budget and the prices from ``.sisyphus/config.toml`` as it is now;
        whether the budget changed. A file that cannot be read is said, and the
        budget stays as it was."""
        from sisyphus_tui.agents.config import CONFIG_FILE, ConfigError, load_config

        if not (self.workspace / CONFIG_FILE).is_file():
            return False  # (a run configured otherwise: nothing to re-read)
        try:
            now = await asyncio.to_thread(load_config, self.workspace)
        except ConfigError as exc:
            self.fault(f"budget not re-read: {exc}")
            return False
        changed = now.budget != self.config.budget
        self.config = self.config.model_copy(update={"budget": now.budget,
                                                     "prices": now.prices})
        return changed

    async def _budget_timer(self) -> None:
        """While the budget holds the run paused, re-read the config now and then: a
        budget raised above what was spent lets the run go on (CONTROL unpause)."""
        while True:
            await asyncio.sleep(BUDGET_REREAD_S)
            paused_by = self._budget_pause
            if paused_by is None or self._running.is_set():
                continue
            if not await self._reread_budget():
                continue
            if all(spent < limit for _, limit, spent in self._budget_limits()):
                self._budget_pause = None
                await self._append("CONTROL", {
                    "action": "unpause", "reason": "budget: raised in the config above "
                                                   "what was spent"},
                    actor=SWARM, to=SWARM, key=f"budget-raised:{paused_by}:"
                                               f"{self.config.budget.run_usd}:"
                                               f"{self.config.budget.agent_usd}")
            else:
                await self._watch_budget()  # (raised, but still spent: said afresh)

    # -- liveness and the ledger file --------------------------------------------

    async def _liveness(self) -> None:
        interval = max(min(self.stale_after_s / 4, 5.0), 0.05)
        while True:
            await asyncio.sleep(interval)
            for name, actor in list(self.actors.items()):
                task = self.tasks.get(name)
                if task is None or task.done():
                    continue
                newest = await self.store.last(to=name)
                pending = newest is not None and newest.offset > actor.cursor
                silent = time.monotonic() - actor.last_activity
                if pending and silent > self.stale_after_s and \
                        self._stale_flagged.get(name) != actor.cursor:
                    self._stale_flagged[name] = actor.cursor
                    await self.store.append("AGENT_STALE", {
                        "agent": name, "silent_s": round(silent, 3),
                        "pending": 1}, actor=SWARM)

    async def _stalls(self) -> None:
        """AGENT_STALLED for an agent thinking on a real backend that has said nothing
        for its role's ``stall_s`` (once per silence: it shows ``stalled`` until it
        speaks again); keyed by agent, message and attempt."""
        while True:
            now = time.monotonic()
            wait = STALL_CHECK_MAX_S
            for name, turn in list(self._thinking.items()):
                last = max(turn.began, self._spoke.get(name, 0.0))
                silent = now - last
                view = self.ledger.agents.get(name)
                if turn.flagged == last or (view is not None and view.asking):
                    continue  # (this silence is said already; or a person is asked)
                if silent < turn.stall_s:
                    wait = min(wait, turn.stall_s - silent)
                    continue
                turn.flagged = last
                turn.stalls += 1
                attempt = view.turn_attempt if view is not None and \
                    view.turn_message == turn.message else self._thoughts[(name,
                                                                           turn.message)]
                again = f":{turn.stalls}" if turn.stalls > 1 else ""
                await self._append("AGENT_STALLED", {
                    "agent": name, "message": turn.message, "silent_s": round(silent, 3)},
                    actor=SWARM, key=f"stalled:{name}:{turn.message}:{attempt}{again}")
            self._stall_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stall_wake.wait(), max(wait, 0.05))

    async def _write_ledger_loop(self) -> None:
        while True:
            await self._ledger_dirty.wait()
            self._ledger_dirty.clear()
            await asyncio.to_thread(self._write_ledger_file)
            await asyncio.sleep(LEDGER_WRITE_INTERVAL_S)

    def _write_ledger_file(self) -> None:
        if self.ledger.goal is None:
            return
        write_atomically(self.workspace / LEDGER_FILE, self.ledger.render())
