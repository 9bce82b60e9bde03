"""SwarmMail: durable append-only inboxes and durable cursors, on the event store.

An agent's inbox is every event addressed to it (``to``); its cursor is the last
offset it acknowledged. ``ack`` can carry the events that handling the message
produced, committed in the same transaction as the cursor advance, so handling
is effectively exactly-once even if the process dies between two statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from sisyphus_tui.errors import SisyphusError, UnknownAgent
from sisyphus_tui.events import AGENT_NAME, AGENT_NAME_RULE, Message
from sisyphus_tui.stream.base import EventStore, NewEvent, Page


class InvalidAgentName(SisyphusError):
    """An agent name that could not be shown or typed safely."""


def check_agent_name(agent: str) -> str:
    """Return ``agent`` if it is a valid name (letters, digits, ``_.@-``, at most 64)."""
    if not isinstance(agent, str) or not AGENT_NAME.fullmatch(agent):
        raise InvalidAgentName(f"invalid agent name {agent!r}: {AGENT_NAME_RULE}")
    return agent


def registration_key(agent: str) -> str:
    """The idempotency key of an agent's AGENT_REGISTERED event."""
    return f"agent:{agent}"


class SwarmMail:
    """Inboxes and cursors for the agents of one store."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def init(self, agent: str, *, role: str | None = None) -> int:
        """Register ``agent`` (idempotent): returns the offset of its AGENT_REGISTERED."""
        check_agent_name(agent)
        return await self.store.append(
            "AGENT_REGISTERED",
            {"agent": agent, "role": role},
            actor=agent,
            key=registration_key(agent),
        )

    async def is_registered(self, agent: str) -> bool:
        """Whether ``agent`` was ever registered."""
        return await self.store.find_key(registration_key(agent)) is not None

    async def require(self, agent: str) -> None:
        """Raise UnknownAgent unless ``agent`` is registered."""
        if not await self.is_registered(agent):
            raise UnknownAgent(f"unknown agent {agent!r}: it was never registered")

    async def agents(self) -> dict[str, str | None]:
        """Every registered agent and its role, in registration order."""
        found: dict[str, str | None] = {}
        offset = 0
        while True:
            page = await self.store.read(offset, 1000, types=["AGENT_REGISTERED"])
            for event in page.events:
                found.setdefault(event.payload["agent"], event.payload.get("role"))
            if not page.events:
                return found
            offset = page.next_offset

    async def send(
        self,
        to: str,
        payload: str | BaseModel | Mapping[str, Any],
        *,
        sender: str | None = None,
        key: str | None = None,
    ) -> int:
        """Append a MESSAGE to ``to``'s inbox (UnknownAgent if it was never registered).

        ``payload`` is the text of the message, or a MESSAGE payload (text, kind,
        data, reply_to)."""
        await self.require(to)
        body: BaseModel | Mapping[str, Any] = (
            Message(text=payload) if isinstance(payload, str) else payload
        )
        return await self.store.append("MESSAGE", body, actor=sender, to=to, key=key)

    async def inbox(
        self, agent: str, from_offset: int | None = None, limit: int = 100
    ) -> Page:
        """``agent``'s messages from ``from_offset`` (default: just after its cursor)."""
        await self.require(agent)
        if from_offset is None:
            from_offset = await self.store.cursor(agent) + 1
        return await self.store.read(from_offset, limit, to=agent)

    async def cursor(self, agent: str) -> int:
        """The last offset ``agent`` acknowledged (0 if none)."""
        await self.require(agent)
        return await self.store.cursor(agent)

    async def ack(
        self,
        agent: str,
        offset: int,
        *,
        events: Iterable[NewEvent | Mapping[str, Any]] = (),
    ) -> list[int]:
        """Advance ``agent``'s durable cursor to ``offset`` (never backwards), committing
        ``events`` (what handling the message produced) in the same transaction."""
        await self.require(agent)
        head = await self.store.head()
        if not 0 <= offset <= head:
            raise SisyphusError(
                f"cannot ack offset {offset} for {agent!r}: the log ends at {head}"
            )
        return await self.store.append_many(events, cursor=(agent, offset))
