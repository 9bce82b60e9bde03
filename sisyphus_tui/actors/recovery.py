"""A coding agent's turn on the record, and its recovery after a crash.

Before a coding agent runs, its TURN_STARTED is appended outside the turn's transaction
(backend, model, the prompt's hash, the session it resumes, the shadow commit the
workspace starts from). A host killed mid-turn leaves that record without the turn's
commit: the next handling of the message finds the turn *in doubt*, puts the workspace
back to that shadow commit (so half an attempt's edits never leak into the retry) and
runs the turn again as the next attempt. Whether the backend session is resumed (with
a note) or a fresh one is started (primed from the log, as after a wipe) is the brain's
policy (``BrainConfig.on_interrupt``): see ``agents/brain.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sisyphus_tui.agents.config import agent_folder
from sisyphus_tui.agents.runner import RUNNING_FILE
from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.faults import describe, is_passing
from sisyphus_tui.process import end_leftover
from sisyphus_tui.shadow import Shadow

if TYPE_CHECKING:
    from sisyphus_tui.actors.base import Turn

# What a primer holds at most: a new session is told where the run is, not all of it.
PRIMER_LEDGER_CHARS = 8000
PRIMER_STATE_CHARS = 2000
PRIMER_VALUE_CHARS = 400
PRIMER_INBOX = 20
PRIMER_MESSAGE_CHARS = 400


def turn_key(agent: str, message: int, attempt: int) -> str:
    """TURN_STARTED's idempotency key: one record per attempt of a turn."""
    return f"turn:{agent}:{message}:{attempt}"


class TurnLog:
    """The record of one handled message's agent runs (a ``brains.base.TurnRecord``):
    read once from the log (was an earlier attempt left in doubt?), rolled back at
    most once, then each run's TURN_STARTED appended before the agent runs."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self._loaded = False
        self._prior: dict[str, Any] | None = None  # the attempt in doubt
        self._rolled: bool | None = None
        self._rolled_to: str | None = None  # the shadow commit the workspace is back at
        self._attempt = 0  # the last attempt this handling appended

    @property
    def agent(self) -> str:
        """The agent whose turn this is."""
        return self.turn.actor.name

    @property
    def message(self) -> int:
        """The offset of the message the turn handles."""
        return self.turn.message.offset

    async def _load(self) -> dict[str, Any] | None:
        if not self._loaded:
            # Messages are handled in order and a turn's records are appended while it
            # is handled: the agent's newest TURN_STARTED is this message's, or none is.
            last = await self.turn.swarm.store.last(types=["TURN_STARTED"],
                                                    actor=self.agent)
            if last is not None and last.payload.get("agent") == self.agent and \
                    last.payload.get("message") == self.message:
                self._prior = dict(last.payload)
            self._loaded = True
        return self._prior

    async def interrupted(self) -> Mapping[str, Any] | None:
        """The TURN_STARTED of this message's earlier attempt, left in doubt (the
        handling of a message is committed with its cursor, so a record for the message
        being handled was never committed), until this handling's first run begins."""
        if self._attempt:
            return None
        return await self._load()

    async def roll_back(self) -> bool:
        """Put the workspace back to the shadow commit the attempt in doubt started
        from (once per handling); whether it was. What the killed host left running
        for this agent is ended first: nothing may edit the files once they are back."""
        if self._rolled is not None:
            return self._rolled
        prior = await self.interrupted()
        sha = prior.get("workspace") if prior is not None else None
        self._rolled = False
        if not isinstance(sha, str) or not sha:
            return False
        workspace = self.turn.swarm.workspace.resolve()
        folder = await asyncio.to_thread(agent_folder, workspace, self.agent)
        await asyncio.to_thread(end_leftover, folder / RUNNING_FILE)
        try:
            changed = await Shadow(workspace).restore(sha)
        except SisyphusError as exc:
            if is_passing(exc):
                raise  # (another git holds the shadow's index: the turn is tried again)
            # (The shadow repository removed, say): the message must not fail for ever.
            self.turn.swarm.fault(
                f"{self.agent}: message {self.message} was in doubt, but the workspace "
                f"cannot be rolled back ({describe(exc)}): the attempt redoing it sees "
                "what the interrupted one left")
            return False
        # The turn's "before" is the workspace as it is now: what the redone attempt
        # changes is then all that is observed (the first attempt's edits are gone).
        for kept in folder.glob(f"before-{self.message}.json"):
            await asyncio.to_thread(kept.unlink, missing_ok=True)
        self._rolled, self._rolled_to = True, sha
        self.turn.swarm.fault(
            f"{self.agent}: message {self.message} was in doubt (attempt "
            f"{prior['attempt'] if prior else '?'} never committed): workspace rolled "
            f"back to {sha[:12]} ({len(changed)} path{'s' if len(changed) != 1 else ''})")
        return True

    async def _snapshot(self, attempt: int) -> str | None:
        """The shadow commit of the workspace now, or None if it cannot be taken (no
        git): said, and the turn goes on without a rollback point."""
        try:
            return await Shadow(self.turn.swarm.workspace.resolve()).snapshot(
                f"turn {self.agent} #{self.message} attempt {attempt}")
        except (SisyphusError, OSError) as exc:
            if is_passing(exc):
                raise  # (a full disk: the turn is tried again)
            self.turn.swarm.fault(f"{self.agent}: no workspace snapshot for message "
                                  f"{self.message} ({describe(exc)}): a crash in this "
                                  "turn cannot be rolled back")
            return None

    async def begin(self, backend: str, model: str | None, prompt: str,
                    session: str | None, *, edits: bool) -> int:
        """Append this run's TURN_STARTED (keyed per attempt, so an append retried
        after a fault writes once); a run that edits gets the shadow commit it starts
        from, after any rollback. Returns its offset."""
        prior = await self.interrupted()
        recovering = prior is not None
        attempt = max(self._attempt, int(prior.get("attempt") or 1) if prior else 0) + 1
        workspace: str | None = None
        if edits:
            if await self.roll_back() and self._rolled_to is not None:
                workspace, self._rolled_to = self._rolled_to, None  # (exactly that tree)
            else:
                workspace = await self._snapshot(attempt)
        offset = await self.turn.swarm.store.append("TURN_STARTED", {
            "agent": self.agent, "message": self.message, "attempt": attempt,
            "backend": backend, "model": model,
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8", "surrogatepass"))
            .hexdigest(), "workspace": workspace, "session": session,
            "recovering": recovering},
            actor=self.agent, key=turn_key(self.agent, self.message, attempt))
        self._attempt = attempt
        return offset

    async def primer(self) -> str:
        """What a new session is told first, from the log: the ledger (its head,
        bounded), this agent's last checkpoint and the messages it has not handled."""
        store = self.turn.swarm.store
        ledger = self.turn.swarm.ledger.render()
        if len(ledger) > PRIMER_LEDGER_CHARS:
            ledger = (ledger[:PRIMER_LEDGER_CHARS]
                      + f"\n[... {len(ledger) - PRIMER_LEDGER_CHARS} more characters]")
        checkpoint = await store.last(types=["CHECKPOINT"], actor=self.agent)
        cursor = await store.cursor(self.agent)
        if checkpoint is None:
            where = "You have no checkpoint yet: you start from the beginning."
        else:
            state = _bounded_state(checkpoint.payload.get("state"))
            where = (f"Your last checkpoint (#{checkpoint.offset}, every message up to "
                     f"#{checkpoint.payload.get('cursor')} handled, step "
                     f"{checkpoint.payload.get('step')}): {state}\nWhat it records as "
                     "done is done: carry on from there, do not redo it.")
        page = await store.read(cursor + 1, PRIMER_INBOX + 1, to=self.agent)
        lines = []
        for event in page.events[:PRIMER_INBOX]:
            text = " ".join(str(event.payload.get("text", "")).split())
            if len(text) > PRIMER_MESSAGE_CHARS:
                text = text[:PRIMER_MESSAGE_CHARS] + " [...]"
            now = " (the one you are handling now)" if event.offset == self.message else ""
            kind = event.payload.get("kind", event.type.lower())
            lines.append(f"- #{event.offset} from {event.actor or '-'}, {kind}{now}: {text}")
        if len(page.events) > PRIMER_INBOX:
            lines.append("- [... more]")
        inbox = "\n".join(lines) or "- (nothing)"
        return ("## Where the run is (your context was reset: this is what the log "
                "remembers)\n\n"
                f"{where}\n\nYour messages not yet handled:\n{inbox}\n\n"
                f"The run's ledger:\n\n{ledger}")


def _bounded_state(state: Any) -> str:
    """A checkpoint's state in JSON, each value cut on its own (one big value must not
    hide the others), the whole bounded too."""
    if not isinstance(state, dict):
        return json.dumps(state)[:PRIMER_STATE_CHARS]
    parts = []
    for key in sorted(state):
        value = json.dumps(state[key], sort_keys=True)
        if len(value) > PRIMER_VALUE_CHARS:
            value = value[:PRIMER_VALUE_CHARS] + " [...]"
        parts.append(f"{json.dumps(str(key))}: {value}")
    text = "{" + ", ".join(parts) + "}"
    return text if len(text) <= PRIMER_STATE_CHARS else text[:PRIMER_STATE_CHARS] + " [...]"
