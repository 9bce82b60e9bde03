"""SisyphusActor: boot from the durable cursor and the last checkpoint, handle the inbox
live, commit each message's effects with the cursor advance in one transaction.

A message's handling is a ``Turn``: the tools a role (and its brain) acts through.
Every effect is an event collected in the turn and committed together with the
actor's CHECKPOINT and cursor advance, so a crash or wipe at any instant leaves
either the whole turn or none of it in the log. Effects outside the log (files,
test runs) are checked on replay: a file already holding the intended content is
not rewritten, and tests are simply run again.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import hashlib
import json
import os
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sisyphus_tui import permissions
from sisyphus_tui.actors.recovery import TurnLog
from sisyphus_tui.agents.base import Answer, Question
from sisyphus_tui.agents.config import BrainConfig, RunConfig, agent_folder
from sisyphus_tui.brains.base import Brain, Thought
from sisyphus_tui.brains.decisions import InvalidDecision, check_decision
from sisyphus_tui.conductor import run_command
from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.faults import describe, is_passing, retrying
from sisyphus_tui.ledger import Ledger, write_atomically
from sisyphus_tui.mail import SwarmMail, check_agent_name, registration_key
from sisyphus_tui.process import CommandResult
from sisyphus_tui.shadow import GitMissing, Shadow, ShadowError
from sisyphus_tui.stream.base import Event, EventStore, NewEvent
from sisyphus_tui.usage import account

if TYPE_CHECKING:  # (skills read YAML: loaded when an agent first thinks, not at import)
    from contextlib import AbstractAsyncContextManager

    from sisyphus_tui.skills import Skill

TEST_TIMEOUT_S = 300.0
# Pauses, in multiples of the swarm's speed, where a person watching must read what just
# happened: at the TUI demo's speed (0.2 s) the plan, its rejection, the re-plan and the
# approval landed within a second; with these each stays on the screen over 2 s.
PHASE_BEATS = 6.0
REVIEW_BEATS = 6.0
STEP_BEATS = 3.0


class SwarmContext(Protocol):
    """What an actor needs from the runtime that hosts it (the runtime implements it)."""

    store: EventStore
    mail: SwarmMail
    ledger: Ledger
    workspace: Path
    speed: float
    config: RunConfig  # the run's config (its price table prices a turn's usage)

    def brain_for(self, role: str) -> BrainConfig:
        """The brain an agent of ``role`` is spawned with (the run's config)."""

    async def wait_until_running(self) -> None:
        """Return when the swarm is not paused."""

    async def ledger_at(self, offset: int) -> Ledger:
        """The ledger once it has folded every event up to ``offset``."""

    async def memory_find(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Precedents from memory-lane, best first, as dicts."""

    def skill_role(self, skill: str) -> tuple[str, str]:
        """The role and default thinking mode of a skill (UnknownSkill if none)."""

    def skill(self, name: str) -> Skill:
        """The skill called ``name``, the workspace's own first (UnknownSkill if none)."""

    def fault(self, text: str) -> None:
        """Say a fault that is being retried (a person must see it; the log may not
        be writable at that moment)."""

    def agent_turn(self, agent: str, backend: str, message: int
                   ) -> AbstractAsyncContextManager[None]:
        """Held while ``agent`` thinks on a real ``backend`` about ``message``: one of
        the backend's slots (waiting, ``queued``, beyond its cap); the host watches
        the turn for a stall."""


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class WorkspaceError(SisyphusError):
    """A path that escapes the workspace, or a file changed behind the actor's back."""


@dataclass(frozen=True)
class BootInfo:
    """What boot found: where the actor resumes and what re-reading cost."""

    cursor: int
    reread: int
    duration_ms: float
    state: dict[str, Any]


class Turn:
    """The handling of one message: tools whose effects become events of one commit."""

    def __init__(self, actor: SisyphusActor, message: Event) -> None:
        self.actor = actor
        self.message = message
        self.outputs: list[NewEvent] = []
        self._outputs = 0  # the sequence of the next AGENT_OUTPUT
        self._registered_here: set[str] = set()
        # Its coding agent's runs on the record (TURN_STARTED), and the recovery of an
        # attempt a crash left in doubt.
        self.record = TurnLog(self)

    @property
    def swarm(self) -> SwarmContext:
        """The hosting runtime."""
        return self.actor.swarm

    def emit(self, type: str, payload: Mapping[str, Any] | None = None, *,
             to: str | None = None, key: str | None = None) -> None:
        """Record an event (validated now, committed with the turn)."""
        self.outputs.append(NewEvent.of(type, payload, actor=self.actor.name, to=to, key=key))

    async def send(self, to: str, kind: str, text: str = "",
                   data: Mapping[str, Any] | None = None) -> None:
        """Mail another agent (or this one) as part of this turn."""
        if to not in self._registered_here and to != self.actor.name:
            await self.swarm.mail.require(to)
        self.emit("MESSAGE", {"kind": kind, "text": text, "data": dict(data or {}),
                              "reply_to": self.message.offset}, to=to)

    async def output(self, kind: str, text: str = "", data: Mapping[str, Any] | None = None,
                     *, raw: str | None = None) -> int:
        """Append what the agent says or does now, outside the turn's transaction (the
        TUI shows it while the turn runs); keyed by (agent, message, sequence), so an
        append retried after a fault writes once. A turn done again after a crash goes
        on numbering after what its first attempt wrote: a real agent's second run says
        other things, and they are kept too. Returns its offset."""
        if self._outputs == 0:
            last = await self.swarm.store.last(types=["AGENT_OUTPUT"], actor=self.actor.name)
            if last is not None and last.payload.get("message") == self.message.offset:
                self._outputs = int(last.payload.get("sequence", -1)) + 1
        sequence = self._outputs
        self._outputs += 1
        if kind == "usage":
            data = self._priced(data or {})
        return await self.swarm.store.append("AGENT_OUTPUT", {
            "agent": self.actor.name, "message": self.message.offset, "sequence": sequence,
            "kind": kind, "text": text, "data": dict(data or {}), "raw": raw},
            actor=self.actor.name,
            key=f"output:{self.actor.name}:{self.message.offset}:{sequence}")

    def _priced(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A usage output accounted as it is appended (the ledger only sums): its
        backend's sense of the tokens, and the price table's estimate where the
        backend gave no cost."""
        config = getattr(self.actor.brain, "config", None)
        if not isinstance(config, BrainConfig):
            config = self.swarm.brain_for(self.actor.role)
        return account(config.backend, data, model=config.model,
                       prices=self.swarm.config.prices)

    async def ask(self, question: Question) -> Answer:
        """Put a tool call no rule decided to a person, through the log (the agent
        ``needs input`` until a PERMISSION_ANSWERED comes, from any process), with the
        timeout and its answer from the agent's brain config."""
        config = getattr(self.actor.brain, "config", None)
        if not isinstance(config, BrainConfig):
            config = self.swarm.brain_for(self.actor.role)
        view = self.swarm.ledger.agents.get(self.actor.name)
        return await permissions.ask(
            self.swarm.store, self.actor.name, question, message=self.message.offset,
            policy=permissions.Policy(config.ask_timeout_s, config.on_timeout),
            always=set(view.always) if view is not None else ())

    def status(self, state: str, detail: str = "", phase: str | None = None) -> None:
        """Say what this agent is doing."""
        self.emit("STATUS_UPDATE", {"agent": self.actor.name, "state": state,
                                    "detail": detail, "phase": phase})

    def spawn(self, skill: str, name: str, prompt: str = "", *,
              thinking: str | None = None, role: str | None = None) -> str:
        """Spawn an agent by skill in this turn; the runtime starts it once committed.

        Returns its name at once; a ``prompt`` becomes its first message (a task), whose
        result comes back to this agent as a message."""
        check_agent_name(name)
        skill_role, default_thinking = self.swarm.skill_role(skill)
        brain = self.swarm.brain_for(role or skill_role)
        self.emit("AGENT_SPAWNED", {"agent": name, "role": role or skill_role, "skill": skill,
                                    "parent": self.actor.name,
                                    "thinking": brain.thinking or thinking or default_thinking,
                                    "brain": brain.backend, "brain_config": brain.record()},
                  key=f"spawn:{name}")
        self.emit("AGENT_REGISTERED", {"agent": name, "role": role or skill_role},
                  key=registration_key(name))
        self._registered_here.add(name)
        if prompt:
            self.emit("MESSAGE", {"kind": "task", "text": prompt,
                                  "data": {"parent": self.actor.name}}, to=name)
        return name

    async def pace(self, beats: float = 1.0) -> None:
        """Let a person watch: wait ``beats`` times ``speed`` seconds (0 runs flat out).
        A turn's events land together when it ends, so a pause inside a turn is what
        keeps the previous one on the screen long enough to read."""
        if self.swarm.speed > 0:
            await asyncio.sleep(self.swarm.speed * beats)

    def _resolve(self, rel_path: str) -> Path:
        """The real path of a workspace file: links resolved, so one that leads out of
        the workspace (or ``..``, or an absolute path) is refused."""
        root = self.swarm.workspace.resolve()
        path = (root / rel_path).resolve()
        if not path.is_relative_to(root):
            raise WorkspaceError(f"path escapes the workspace: {rel_path!r}")
        if path == root:
            raise WorkspaceError(f"path is the workspace itself, not a file: {rel_path!r}")
        return path

    async def write_file(self, rel_path: str, content: str, *, step: int | None = None,
                         expected_before: str | None = None) -> str:
        """Write a workspace file and record FILE_EDIT with its hashes; returns the new hash.

        If the file already holds ``content`` (the write was in flight when the actor
        died), it is not rewritten: the FILE_EDIT says ``already_applied``."""
        await self.pace()
        path = self._resolve(rel_path)
        data = content.encode("utf-8")
        after = sha256_of(data)
        current = await asyncio.to_thread(_read_or_none, path)
        before = None if current is None else sha256_of(current)
        already = before == after
        if already:
            before = expected_before
        else:
            await asyncio.to_thread(_write_file, path, data)
        self.emit("FILE_EDIT", {"path": rel_path, "before_sha256": before,
                                "after_sha256": after, "step": step,
                                "already_applied": already})
        return after

    async def snapshot(self) -> dict[str, str]:
        """Every workspace file's hash (the swarm's own folders and caches left out):
        what a coding agent's edits are seen against."""
        return await asyncio.to_thread(workspace_hashes, self.swarm.workspace.resolve())

    async def snapshot_before(self) -> dict[str, str]:
        """The workspace as it was before this turn's agent first acted: taken once per
        message and kept beside the agent's own files, so a turn done again after a
        crash still sees (and records) what the first attempt changed. (Where that
        attempt was rolled back, ``TurnLog.roll_back`` drops the kept one: the workspace
        is back as it was, and only the redo's own edits are seen.)"""
        root = self.swarm.workspace.resolve()
        return await asyncio.to_thread(_kept_snapshot, root, self.actor.name,
                                       self.message.offset)

    async def observe(self, before: dict[str, str], *, step: int | None = None) -> list[str]:
        """Record a FILE_EDIT for each file that changed since ``before`` (made, changed
        or deleted), as the files say, whatever the agent said; returns their paths."""
        after = await self.snapshot()
        changed = sorted(path for path in before.keys() | after.keys()
                         if before.get(path) != after.get(path))
        for path in changed:
            self.emit("FILE_EDIT", {"path": path, "before_sha256": before.get(path),
                                    "after_sha256": after.get(path), "step": step,
                                    "how": "observed"})
        return changed

    async def run(self, argv: list[str], timeout_s: float = TEST_TIMEOUT_S) -> CommandResult:
        """Run a command in the workspace (argv list, never a shell string)."""
        await self.pace()
        return await run_command(argv, self.swarm.workspace, timeout_s)

    async def run_tests(self, target: str | None = None, *, step: int | None = None,
                        record: bool = True) -> CommandResult:
        """Run the workspace's tests (one target or the suite), as the spec's ``tests``
        says (default: pytest in this interpreter); TEST_PASS or TEST_FAIL."""
        own = self.swarm.ledger.spec.get("tests")
        argv = [str(a) for a in own] if isinstance(own, list) and own else [
            "{python}", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        if target:
            argv.append(target)
        result = await self.run(argv)
        if record:
            shown = ["python" if argv[0] == "{python}" else argv[0], *argv[1:]]
            self.emit("TEST_PASS" if result.ok else "TEST_FAIL", {
                "command": shown, "step": step, "exit_code": result.exit_code,
                "duration_s": round(result.duration_s, 4),
                "output_tail": result.output_tail[-600:]})
        return result

    async def think(self, purpose: str, **data: Any) -> dict[str, Any]:
        """Ask this actor's brain, with the ledger as of this message; its answer is
        checked against the purpose's model. A malformed one is sent back once, in the
        same session, with what was wrong (``invalid_answer``); a second fails the turn
        (InvalidDecision names the field)."""
        ledger = await self.swarm.ledger_at(self.message.offset)
        skill = await self.actor.skill_config()
        view = ledger.agents.get(self.actor.name)
        thinking = view.thinking if view is not None else (skill.thinking if skill else "off")
        live = self.swarm.ledger.agents.get(self.actor.name)

        async def say(kind: str, text: str, said: dict[str, Any], raw: str | None) -> int:
            return await self.output(kind, text, said, raw=raw)

        thought = Thought(purpose, self.actor.role, self.actor.name, ledger, self.message, data,
                          instructions=skill.instructions if skill else "", thinking=thinking,
                          tools=skill.tools if skill else (),
                          timeout_s=skill.timeout_s if skill else None,
                          workspace=self.swarm.workspace.resolve(),
                          session=live.session if live is not None else None, say=say,
                          ask=self.ask, record=self.record)
        answer = await self._think(thought)
        try:
            return check_decision(purpose, answer)
        except InvalidDecision as exc:
            again = replace(thought, data={**data, "invalid_answer": str(exc)})
            return check_decision(purpose, await self._think(again))

    async def _think(self, thought: Thought) -> dict[str, Any]:
        """The brain's answer; a coding agent's (a brain that acts, of a real backend)
        in one of its backend's slots (the scripted brain is never capped)."""
        brain = self.actor.brain
        if not brain.acts:
            return await brain.think(thought)
        async with self.swarm.agent_turn(self.actor.name, brain.kind, self.message.offset):
            return await brain.think(thought)


# What a workspace snapshot leaves out: the swarm's own folder, version control, and the
# caches and environments tools make.
IGNORED_DIRS = frozenset({".sisyphus", ".git", ".hg", ".svn", "__pycache__", ".pytest_cache",
                          ".mypy_cache", ".ruff_cache", ".venv", "venv", "node_modules",
                          ".tox", ".nox"})
# ... and the ledger the swarm itself writes into the workspace (its temp files too).
IGNORED_FILE_PREFIXES = ("SISYPHUS_LEDGER.md", ".SISYPHUS_LEDGER.md.")


# What of the swarm's own folder an agent's edits are watched in too: the config and
# skills that decide what agents may do next.
WATCHED_IN_SISYPHUS = ("config.toml", "skills")
# (path, size, mtime_ns, ctime_ns, inode) -> digest: a big repository is hashed once,
# then only what changed (ctime cannot be set back by the agent).
_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def _digest(path: Path, info: os.stat_result) -> str:
    key = (str(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
    known = _DIGESTS.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if len(_DIGESTS) > 200_000:
        _DIGESTS.clear()
    _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def workspace_hashes(root: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``root`` by relative path: a regular file's
    content, a symbolic link's target (``symlink\\0TARGET``, never followed); the
    IGNORED_DIRS left out, but the swarm's config and skills kept in."""
    hashes: dict[str, str] = {}
    walks = [root]
    own = root / ".sisyphus"
    for name in WATCHED_IN_SISYPHUS:
        if (own / name).is_dir() and not (own / name).is_symlink():
            walks.append(own / name)
        else:
            _hash_one(root, own / name, hashes)
    for top in walks:
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS or top != root)
            for name in dirs:
                if os.path.islink(os.path.join(folder, name)):
                    _hash_one(root, Path(folder, name), hashes)  # (os.walk lists it)
            for name in files:
                if folder == str(root) and name.startswith(IGNORED_FILE_PREFIXES):
                    continue
                _hash_one(root, Path(folder, name), hashes)
    return hashes


def _kept_snapshot(root: Path, agent: str, message: int) -> dict[str, str]:
    """The snapshot kept for (agent, message) (a turn done again), else a new one, kept
    in the agent's folder; its older ones are dropped (their turns are committed)."""
    path = agent_folder(root, agent) / f"before-{message}.json"
    try:
        kept = json.loads(path.read_bytes())
        if isinstance(kept, dict) and all(isinstance(v, str) for v in kept.values()):
            return kept
    except (FileNotFoundError, ValueError):
        pass
    hashes = workspace_hashes(root)
    for old in path.parent.glob("before-*.json"):
        old.unlink(missing_ok=True)
    write_atomically(path, json.dumps(hashes).encode(), mode=0o600)
    return hashes


def _hash_one(root: Path, path: Path, hashes: dict[str, str]) -> None:
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(path).encode("utf-8", "surrogateescape")
            digest = hashlib.sha256(b"symlink\0" + target).hexdigest()
        elif stat.S_ISREG(info.st_mode):
            digest = _digest(path, info)
        else:
            return
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return  # gone (or unreadable) as it was walked
    hashes[path.relative_to(root).as_posix()] = digest


def _read_or_none(path: Path) -> bytes | None:
    """The bytes of a regular file (None if missing), never through a link: ``path``
    is already resolved, so a link found here was planted since."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise WorkspaceError(f"path became a symbolic link: {path}") from None
        if is_passing(exc):
            raise  # an I/O error that may pass: the turn is tried again
        raise WorkspaceError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WorkspaceError(f"not a regular file: {path}")
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` (resolved, in the workspace) through a new temp file beside it."""
    write_atomically(path, data, mode=0o666)  # the umask decides, as for any new file


class SisyphusActor(ABC):
    """A durable actor: any in-memory state can be thrown away and rebuilt from the log."""

    role: ClassVar[str]

    def __init__(self, swarm: SwarmContext, name: str, brain: Brain, *,
                 skill: str | None = None, parent: str | None = None) -> None:
        self.swarm = swarm
        self.name = name
        self.brain = brain
        self.skill = skill
        self.parent = parent
        self.state: dict[str, Any] = {}
        self.cursor = 0
        self.last_activity = time.monotonic()
        self.handled = 0
        self.handling: int | None = None  # the offset of the message being handled
        self._skill: Skill | None = None

    async def boot(self) -> BootInfo:
        """Read the durable cursor and the last checkpoint: cost independent of log size."""
        start = time.perf_counter()
        store = self.swarm.store
        self.cursor = await store.cursor(self.name)
        checkpoint = await store.last(types=["CHECKPOINT"], actor=self.name)
        self.state = dict(checkpoint.payload.get("state", {})) if checkpoint else {}
        pending = await store.read(self.cursor + 1, 1000, to=self.name)
        reread = (1 if checkpoint else 0) + len(pending.events)
        self.last_activity = time.monotonic()
        return BootInfo(self.cursor, reread, (time.perf_counter() - start) * 1000, self.state)

    async def serve(self, info: BootInfo) -> None:
        """Handle the inbox from the cursor on, live, forever."""
        async for message in self.swarm.store.tail(info.cursor + 1, to=self.name):
            await self.swarm.wait_until_running()
            await self.handle(message)

    async def handle(self, message: Event) -> None:
        """One message, one tracking transaction: effects + CHECKPOINT + cursor advance."""
        self.last_activity = time.monotonic()
        self.handling = message.offset
        before = copy.deepcopy(self.state)
        turn = Turn(self, message)
        try:
            await self.on_message(turn, message)
        except Exception as exc:
            if is_passing(exc):
                raise  # tried again
            if getattr(exc, "not_the_message", False):
                raise  # its setup failed (a key, a CLI, a model): fixed, the same runs
            internal = self._from_the_swarm(message)
            failed_before = (self.name, message.offset) in self.swarm.ledger.failed_on
            if internal and not failed_before:
                raise  # the agent's failure, on the record; the next host tries again
            # A message from outside the swarm (a person, a tool) this role cannot act
            # on, or one it failed on before (a poison message): refused on the record,
            # the state as it was before it, and the agent goes on with the next one.
            error = f"{type(exc).__name__}: {exc}"
            self.swarm.fault(f"{self.name}: refused message {message.offset} from "
                             f"{message.actor or '-'}: {error}")
            self.state = before
            turn = Turn(self, message)
            turn.status("refused", f"message {message.offset} from {message.actor or '-'}: "
                                   f"{error}"[:500])
            if internal:
                # The coordinator decides what a message the swarm needed and cannot
                # have means for the run.
                await turn.send("kernel", "refused", error[:1000], {
                    "agent": self.name, "message": message.offset,
                    "kind": message_kind(message), "data": message.payload.get("data", {})})
        workspace = await self._snapshot_workspace(message)
        turn.emit("CHECKPOINT", {"agent": self.name, "cursor": message.offset,
                                 "step": self.state.get("step"), "state": self.state,
                                 **({"workspace": workspace} if workspace else {})})
        await self._commit(message, turn.outputs)
        self.cursor = message.offset
        self.handled += 1
        self.last_activity = time.monotonic()

    # Whether "git is missing" was said already (once per process, not per checkpoint).
    _no_git_said: ClassVar[bool] = False

    async def _snapshot_workspace(self, message: Event) -> str | None:
        """The shadow commit of the workspace as this message leaves it, for an agent
        that acts on the workspace (None for the others). A fault that passes is retried
        like the commit; one that does not (no git) is said and the checkpoint goes on
        without it: the log's checkpoint matters more than the workspace's."""
        if self.role != "executor" and not getattr(self.brain, "acts", False):
            return None
        shadow = Shadow(self.swarm.workspace)

        def said(exc: BaseException, retries: int, delay: float) -> None:
            self.swarm.fault(f"{self.name}: the workspace snapshot of message "
                             f"{message.offset} failed ({describe(exc)}); retry {retries} "
                             f"in {delay:.1f}s")

        try:
            return await retrying(lambda: shadow.snapshot(f"{self.name}@{message.offset}"),
                                  said)
        except GitMissing as exc:
            if not SisyphusActor._no_git_said:
                SisyphusActor._no_git_said = True
                self.swarm.fault(f"{self.name}: no workspace checkpoints: {exc}")
        except ShadowError as exc:
            self.swarm.fault(f"{self.name}: no workspace checkpoint for message "
                             f"{message.offset}: {exc}")
        return None

    async def _commit(self, message: Event, outputs: list[NewEvent]) -> None:
        """Commit a turn; a fault that passes (a lock, a full disk) is retried with a
        backoff, never made the turn's verdict: the turn's work is not redone."""
        tries = 0

        async def attempt() -> None:
            nonlocal tries
            tries += 1
            # SQLite rolls back a commit that fails; should one have gone through after
            # all, the cursor (in the same transaction) says so.
            if tries > 1 and await self.swarm.store.cursor(self.name) >= message.offset:
                return
            await self.swarm.mail.ack(self.name, message.offset, events=outputs)

        def said(exc: BaseException, retries: int, delay: float) -> None:
            self.swarm.fault(f"{self.name}: the commit of message {message.offset} failed "
                             f"({describe(exc)}); retry {retries} in {delay:.1f}s")

        await retrying(attempt, said)
        if tries > 1:
            self.swarm.fault(f"{self.name}: message {message.offset} committed after "
                             f"{tries - 1} retries")

    async def skill_config(self) -> Skill | None:
        """This agent's skill (read once, off the event loop), or None without one."""
        if self.skill is None:
            return None
        if self._skill is None:
            self._skill = await asyncio.to_thread(self.swarm.skill, self.skill)
        return self._skill

    def _from_the_swarm(self, message: Event) -> bool:
        """Whether the message was written by the swarm or one of its actors."""
        from sisyphus_tui.actors import ROLES

        if message.actor == "swarm":
            return True
        view = self.swarm.ledger.agents.get(message.actor or "")
        return view is not None and view.role in ROLES

    @abstractmethod
    async def on_message(self, turn: Turn, message: Event) -> None:
        """The role's logic: act on one message through the turn's tools."""

    def wipe(self) -> dict[str, Any]:
        """Throw away all in-memory state, as a context wipe does; returns what was lost."""
        lost = {"state_keys": sorted(self.state), "brain_turns": self.brain.memory_size,
                "handled_since_boot": self.handled}
        self.state = {}
        self.cursor = 0
        self.handled = 0
        self.brain.reset()
        return lost

    async def finish_task(self, turn: Turn, message: Event, text: str,
                          data: Mapping[str, Any] | None = None) -> None:
        """Reply to whoever gave this agent a task (kind ``result``)."""
        parent = message.payload.get("data", {}).get("parent") or message.actor or self.parent
        if parent:
            await turn.send(parent, "result", text, {"agent": self.name, **dict(data or {})})


def message_kind(message: Event) -> str:
    """The kind of a MESSAGE (``note`` by default), or the event type for other events."""
    if message.type == "MESSAGE":
        return str(message.payload.get("kind", "note"))
    return message.type
