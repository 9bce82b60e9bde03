"""The Brain interface: what an actor thinks with.

Given its role, the ledger and the message, a brain returns a decision (the next
actions): a plan, a verdict, the files to write for a TDD step. The actor carries
the actions out through its tools, so every effect becomes an event. Brains are
pluggable (the scripted one, or a coding-agent CLI: ``agents/brain.py``) and know nothing
of how the actor records what they decide.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream.base import Event

# What an actor may ask its brain for.
PURPOSES = ("plan", "review", "red", "green", "fix", "task")


@dataclass(frozen=True)
class Thought:
    """One question to a brain: why (purpose), who asks, and what it knows."""

    purpose: str
    role: str
    agent: str
    ledger: Ledger
    message: Event
    data: dict[str, Any] = field(default_factory=dict)
    # The agent's configuration: its skill's Markdown body (a real agent's system prompt
    # or appended instructions), its thinking mode, tools and time limit.
    instructions: str = ""
    thinking: str = "off"
    tools: tuple[str, ...] = ()
    timeout_s: float | None = None
    # Where a coding agent works, the backend session it resumes (the log's, None for
    # a new one), and how what it streams reaches the log as it happens:
    # ``say(kind, text, data, raw)`` (Turn.output).
    workspace: Path | None = None
    session: str | None = None
    say: Callable[[str, str, dict[str, Any], str | None], Awaitable[int]] | None = None
    # How a tool call the policy does not decide is put to a person (the log's
    # PERMISSION_REQUESTED, answered by PERMISSION_ANSWERED): see sisyphus_tui.permissions.
    ask: Any = None
    # How a coding agent's run goes on the record before it starts (TURN_STARTED), and
    # what it is told when it redoes a turn a crash left in doubt or starts a new
    # session after a wipe: a TurnRecord (sisyphus_tui.actors.recovery.TurnLog).
    record: TurnRecord | None = None


class TurnRecord(Protocol):
    """A turn's record, as a coding-agent brain uses it (one per handled message)."""

    async def interrupted(self) -> Mapping[str, Any] | None:
        """The TURN_STARTED of this message's earlier attempt that a crash left in
        doubt (never committed), until this handling's first run begins; else None."""

    async def roll_back(self) -> bool:
        """Put the workspace back as that attempt found it; whether it was."""

    async def primer(self) -> str:
        """What a new session is told first: the ledger, the last checkpoint's state
        and the unacknowledged inbox, bounded."""

    async def begin(self, backend: str, model: str | None, prompt: str,
                    session: str | None, *, edits: bool) -> int:
        """Append this run's TURN_STARTED (before the agent runs); its offset."""


class Brain(ABC):
    """The narrow interface every brain implements.

    ``think`` answers by purpose:
    - ``plan``: {"approach", "summary", "tags", "steps": [{"title", "test", "files"}]}
    - ``review``: {"verdict": "approve" | "needs_changes", "reasons", "precedents"}
    - ``red`` / ``green`` / ``fix``: {"files": {path: content}, "test": target}
    - ``task``: {"text", "data"}

    Each answer is checked against its purpose's model (``brains/decisions.py``) where
    the actor asks; a malformed one is asked again once, with ``invalid_answer`` in the
    thought's data saying what was wrong.
    """

    kind: ClassVar[str]
    # Whether it edits the workspace itself (a coding agent) rather than answering with
    # the files to write: the executor then observes what changed.
    acts: ClassVar[bool] = False

    @abstractmethod
    async def think(self, thought: Thought) -> dict[str, Any]:
        """Decide the next actions for ``thought``."""

    @abstractmethod
    def reset(self) -> None:
        """A context wipe: forget the whole conversation (re-primed from the ledger)."""

    @property
    @abstractmethod
    def memory_size(self) -> int:
        """How many turns the brain holds in its context (what a wipe loses)."""
