"""The store interface every backend implements, and the event records it deals in.

The domain (mail, actors, TUI) only sees this module; the SQL lives behind it
(``stream/sqlite.py``, a PostgreSQL backend later), and the same contract suite
in ``tests/stream`` runs against every backend.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from array import array
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self

from pydantic import BaseModel

from sisyphus_tui.errors import InvalidPayload
from sisyphus_tui.events import UNDECODABLE as UNDECODABLE  # (readers find it here)
from sisyphus_tui.events import decode_payload, encode_payload
from sisyphus_tui.stream.lease import HostInfo, HostLease


class Event(NamedTuple):
    """One committed event, as read back from the log (payload decoded from JSON).

    A named tuple, not a dataclass: replaying a large log builds one per row, and a
    tuple is the cheapest immutable record Python has."""

    offset: int
    type: str
    actor: str | None
    to: str | None
    payload: dict[str, Any]
    ts: float
    key: str | None

    def model(self) -> BaseModel | dict[str, Any]:
        """The payload as its registered pydantic model (a dict for ``x.`` types)."""
        return decode_payload(self.type, self.payload)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return {
            "offset": self.offset,
            "type": self.type,
            "actor": self.actor,
            "to": self.to,
            "key": self.key,
            "ts": self.ts,
            "payload": self.payload,
        }


class NewEvent(NamedTuple):
    """An event to append: validated and encoded when it is built, before it is queued.
    (A named tuple whose fields are in the order of the INSERT's columns: one is built
    per append, on the hot path, and it is bound to the statement as it is.)"""

    type: str
    actor: str | None
    to: str | None
    payload_json: str
    key: str | None = None

    @classmethod
    def of(
        cls,
        type: str,
        payload: BaseModel | Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        to: str | None = None,
        key: str | None = None,
    ) -> NewEvent:
        """Validate ``payload`` for ``type`` (InvalidPayload names the field).

        Every field is checked here, so a bad event fails alone, before it is queued,
        and never fails the batch it would have been committed with."""
        # Plain ASCII strings (nearly every event) pass two C-level tests per field; the
        # rest are looked at closely: a lone surrogate (os.fsdecode of non-UTF-8 bytes)
        # cannot be encoded for the database.
        if not (type.__class__ is str and type.isascii()) or not (
            actor is None or (actor.__class__ is str and actor.isascii())
        ) or not (to is None or (to.__class__ is str and to.isascii())) or not (
            key is None or (key.__class__ is str and key.isascii())
        ):
            _check_fields(type=type, actor=actor, to=to, key=key)
        # A plain dict (the common case, on the hot path) is encoded as it is.
        data: Any = payload
        if payload.__class__ is not dict and isinstance(payload, Mapping):
            data = dict(payload)
        # tuple.__new__ skips the named tuple's Python-level __new__.
        return tuple.__new__(cls, (type, actor, to, encode_payload(type, data), key))

    @classmethod
    def coerce(cls, item: NewEvent | Mapping[str, Any]) -> NewEvent:
        """Accept a NewEvent or a mapping with type, payload, actor, to and key."""
        if isinstance(item, NewEvent):
            return item
        unknown = set(item) - {"type", "payload", "actor", "to", "key"}
        if unknown or "type" not in item:
            raise TypeError(
                "an event to append needs 'type' and may have payload, actor, to, key; "
                f"got {sorted(item)}"
            )
        return cls.of(
            item["type"],
            item.get("payload"),
            actor=item.get("actor"),
            to=item.get("to"),
            key=item.get("key"),
        )


MAX_OFFSET = 2**63 - 1
"""The largest offset (and cursor position) a log can hold: SQLite's signed 64-bit."""


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidPayload(f"invalid event: {name} must be a string, "
                             f"not {value.__class__.__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPayload(
            f"invalid event: {name} {value!r} has a lone surrogate {value[exc.start]!r} "
            f"at index {exc.start} (not valid UTF-8 text)") from None


def _check_fields(**fields: object) -> None:
    """Refuse an event field that is not text the database can store."""
    for name, value in fields.items():
        if value is not None or name == "type":
            _check_text(name, value)


def _check_cursor(cursor: object) -> None:
    """Refuse a cursor advance that is not (agent name, offset within the log's range)."""
    if not (isinstance(cursor, tuple) and len(cursor) == 2):
        raise InvalidPayload(f"invalid cursor: must be (agent, offset), not {cursor!r}")
    agent, offset = cursor
    _check_text("cursor agent", agent)
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidPayload(f"invalid cursor: offset must be a whole number from 0 to "
                             f"{MAX_OFFSET}, not {offset!r}")


class Page(NamedTuple):
    """A page of events and the offset to pass as ``from_offset`` for the next one."""

    events: list[Event]
    next_offset: int


class EventStore(ABC):
    """A durable, append-only, totally ordered log of events.

    Offsets start at 1 and are unique, gap-free and in commit order; ``head()``
    is 0 for an empty log. ``from_offset`` is inclusive everywhere.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._changed = asyncio.Event()

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the log lives (a file path or a URL without its password)."""

    # -- writing ---------------------------------------------------------------

    async def append(
        self,
        type: str,
        payload: BaseModel | Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        to: str | None = None,
        key: str | None = None,
    ) -> int:
        """Append one event; returns its offset once it is durably committed.

        Appending an existing ``key`` returns the existing offset and writes nothing.
        """
        event = NewEvent.of(type, payload, actor=actor, to=to, key=key)
        return (await self._commit((event,), None))[0]

    async def append_many(
        self,
        events: Iterable[NewEvent | Mapping[str, Any]],
        *,
        cursor: tuple[str, int] | None = None,
    ) -> list[int]:
        """Append several events atomically: all are committed, or none.

        With ``cursor=(agent, offset)`` the agent's durable cursor advances to
        ``offset`` in the same transaction (the tracking pattern): if the process
        dies at any instant, either the events and the cursor advance both
        happened, or neither did.
        """
        batch = [NewEvent.coerce(item) for item in events]
        if cursor is not None:
            _check_cursor(cursor)
        if not batch and cursor is None:
            return []
        return await self._commit(batch, cursor)

    @abstractmethod
    def _commit(
        self, events: Sequence[NewEvent], cursor: tuple[str, int] | None
    ) -> Awaitable[list[int]]:
        """Commit ``events`` (and the cursor advance) in one durable transaction; the
        awaitable gives their offsets. (Not a coroutine: no frame per append.)"""

    # -- reading ---------------------------------------------------------------

    @abstractmethod
    async def read(
        self,
        from_offset: int = 0,
        limit: int = 1000,
        *,
        to: str | None = None,
        types: Sequence[str] | None = None,
        actor: str | None = None,
    ) -> Page:
        """Events with offset >= ``from_offset`` matching the filters, oldest first."""

    @abstractmethod
    async def last(
        self,
        *,
        types: Sequence[str] | None = None,
        actor: str | None = None,
        to: str | None = None,
    ) -> Event | None:
        """The newest event matching the filters (e.g. an actor's last CHECKPOINT)."""

    @abstractmethod
    async def read_offsets(self, offsets: Sequence[int]) -> list[Event]:
        """The events at these offsets, in offset order (a viewer's visible rows)."""

    async def match_offsets(self, from_offset: int = 0, **filters: Any) -> list[int]:
        """``match_array`` (the same filters) as a list."""
        return (await self.match_array(from_offset, **filters)).tolist()

    @abstractmethod
    async def match_array(
        self,
        from_offset: int = 0,
        *,
        agent: str | None = None,
        types: Sequence[str] | None = None,
        exclude_types: Collection[str] | None = None,
        text: str | None = None,
        before: int | None = None,
    ) -> array[int]:
        """Offsets (from ``from_offset``, below ``before`` if given) of the events
        written by or addressed to ``agent``, of ``types`` and not of ``exclude_types``,
        whose type, actor or payload contains ``text`` (as ``text_matches`` decides:
        case-insensitive, non-ASCII text included), as a compact array (8 bytes an
        offset: what a viewer keeps of a large log)."""

    @abstractmethod
    async def head(self) -> int:
        """The offset of the last committed event (0 for an empty log)."""

    @abstractmethod
    async def find_key(self, key: str) -> int | None:
        """The offset of the event appended with ``key``, if any."""

    @abstractmethod
    async def cursor(self, agent: str) -> int:
        """The agent's durable cursor: the last offset it acknowledged (0 if none)."""

    @abstractmethod
    async def cursors(self) -> dict[str, int]:
        """Every stored cursor, by agent name."""

    async def tail(
        self,
        from_offset: int = 0,
        *,
        to: str | None = None,
        types: Sequence[str] | None = None,
        actor: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[Event]:
        """Yield every matching event from ``from_offset`` on, then new ones as they commit."""
        next_offset = from_offset
        async with self._watching():
            while True:
                seen = self._generation
                page = await self.read(
                    next_offset, page_size, to=to, types=types, actor=actor
                )
                for event in page.events:
                    yield event
                next_offset = page.next_offset
                if len(page.events) < page_size:
                    await self._wait_for_commit(seen)

    # -- commit notification ---------------------------------------------------

    def _notify_commit(self) -> None:
        """Wake every tail: something was committed (here or by another process)."""
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _wait_for_commit(self, seen: int) -> None:
        if self._generation == seen:
            await self._changed.wait()

    @abstractmethod
    def _watching(self) -> Any:
        """An async context manager kept open while a tail runs (starts change detection)."""

    # -- hosting ---------------------------------------------------------------

    @abstractmethod
    async def host_lease(self) -> HostLease:
        """Take the lease that makes this process the swarm's one host (HostBusy names
        the holder if another process has it); released by ``release()`` or the
        process's end, however it ends."""

    @abstractmethod
    def current_host(self) -> HostInfo | None:
        """Who hosts this log's swarm now (None: nobody), without taking the lease."""

    # -- lifecycle -------------------------------------------------------------

    @abstractmethod
    async def close(self) -> None:
        """Finish pending appends and release the database."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def search_form(payload: Mapping[str, Any]) -> str:
    """The text a payload is searched in: its compact JSON with non-ASCII characters as
    themselves (as the log stores them), whoever wrote it and whatever its type."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def text_matches(needle: str, *haystacks: str) -> bool:
    """Whether any haystack contains ``needle``, case-insensitively: the one test of a
    text filter, for the store's search and a viewer's new events alike.

    An ASCII needle is compared with ASCII case folded only (SQLite's ``lower()``, so
    the store needs no Python call per row); any other with Python's ``str.lower``
    (``CAFÉ`` finds ``café``)."""
    if needle.isascii():
        wanted = needle.lower().encode()
        return any(wanted in h.encode("utf-8", "surrogatepass").lower() for h in haystacks)
    folded = needle.lower()
    return any(folded in h.lower() for h in haystacks)


def dumps_event(event: Event) -> str:
    """One JSON line for an event (ASCII-only, so no control byte reaches a terminal)."""
    return json.dumps(event.as_dict(), separators=(",", ":"))
