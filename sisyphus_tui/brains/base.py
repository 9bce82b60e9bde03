"""The Brain interface: what an actor thinks with.

Given its role, the ledger and the message, a brain returns a decision (the next
actions): a plan, a verdict, the files to write for a TDD step. The actor carries
the actions out through its tools, so every effect becomes an event. Brains are
pluggable (the scripted one, or a coding-agent CLI: ``agents/brain.py``) and know nothing
of how the actor records what they decide.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
