"""The Swarm: owns the store, the mail, the ledger and the actors; carries out control
requests appended to the log by any process; tracks liveness.

One follower task tails the whole log: it folds every event into the ledger (and
writes SISYPHUS_LEDGER.md, throttled), starts actors when AGENT_SPAWNED appears, and
notices when the run is done or blocked. Control requests (CONTROL events addressed
to ``swarm``) are the swarm's own inbox, handled from its durable cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
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
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event, EventStore
from sisyphus_tui.stream.lease import HostLease

if TYPE_CHECKING:
    from sisyphus_tui.skills import Skill

SWARM = "swarm"
HUMAN = "human"
LEDGER_WRITE_INTERVAL_S = 0.2
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
            for agent in list(self.ledger.agents.values()):
                if agent.role in ROLES and agent.state not in ("done", "registered"):
                    self.start_actor(agent.name, agent.role, agent.skill,
                                     resumed=agent.cursor > 0 or agent.state in ("wiped",
                                                                                 "failed"))
            self._supervised("control", self._control)
            self._supervised("liveness", self._liveness)
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
                    why = describe(exc) if isinstance(exc, SisyphusError) else \
                        f"{type(exc).__name__}: {describe(exc)}"
                    self.say(f"control request {event.offset} refused: {why}")
                    await self._append("STATUS_UPDATE", {
                        "agent": SWARM, "state": "refused",
                        "detail": f"control {event.offset}: {why}"[:500]}, actor=SWARM)
            await self.mail.ack(SWARM, event.offset)

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
            self._finished.set()

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
