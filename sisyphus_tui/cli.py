"""The ``sisyphus`` command: write to, read from and follow a swarm's log.

Every error on bad input prints one line to stderr naming the problem and exits
with 2; nothing is written to the database in that case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sisyphus_tui import __version__
from sisyphus_tui.errors import InvalidPayload, SisyphusError
from sisyphus_tui.mail import SwarmMail, check_agent_name
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream import Event, EventStore, NewEvent, dumps_event, open_store

EXIT_ERROR = 2
DEFAULT_DB = Path(".sisyphus") / "swarm.db"


def default_db() -> str:
    """``SISYPHUS_DB``, else ``.sisyphus/swarm.db`` under the current directory."""
    return os.environ.get("SISYPHUS_DB") or str(DEFAULT_DB)


# -- output ---------------------------------------------------------------------


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def summarize(payload: dict[str, Any]) -> str:
    """One line for a payload: ``text`` if it has one, else its compact JSON."""
    text = payload.get("text")
    if isinstance(text, str) and text and len(payload) <= 4:
        return text
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def format_event(event: Event) -> str:
    """A human line for an event; text from agents is shown literally, never interpreted."""
    to = f" -> {event.to}" if event.to else ""
    line = (
        f"{event.offset:>7}  {_clock(event.ts)}  {event.actor or '-':<12} "
        f"{event.type:<16}{to}  {summarize(event.payload)}"
    )
    return printable(line)


def _emit_line(line: str) -> None:
    sys.stdout.write(line + "\n")


# -- commands -------------------------------------------------------------------


async def _with_store(
    args: argparse.Namespace,
    body: Callable[[EventStore], Awaitable[int]],
    *,
    create: bool,
) -> int:
    store = await open_store(args.db, create=create)
    async with store:
        return await body(store)


def _parse_payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"malformed JSON in --payload: {exc}") from None


async def cmd_init(args: argparse.Namespace) -> int:
    async def body(store: EventStore) -> int:
        _emit_line(f"{store.location}  (head {await store.head()})")
        return 0

    return await _with_store(args, body, create=True)


async def cmd_register(args: argparse.Namespace) -> int:
    check_agent_name(args.agent)

    async def body(store: EventStore) -> int:
        _emit_line(str(await SwarmMail(store).init(args.agent, role=args.role)))
        return 0

    return await _with_store(args, body, create=True)


async def cmd_emit(args: argparse.Namespace) -> int:
    # Validate before the database is opened: bad input never touches the file.
    event = NewEvent.of(
        args.type, _parse_payload(args.payload), actor=args.actor, to=args.to, key=args.key
    )

    async def body(store: EventStore) -> int:
        if event.to is not None:
            await SwarmMail(store).require(event.to)
        (offset,) = await store.append_many([event])
        _emit_line(str(offset))
        return 0

    return await _with_store(args, body, create=True)


async def cmd_send(args: argparse.Namespace) -> int:
    event = NewEvent.of("MESSAGE", {"text": args.text}, actor=args.sender, to=args.to)

    async def body(store: EventStore) -> int:
        await SwarmMail(store).require(args.to)
        (offset,) = await store.append_many([event])
        _emit_line(str(offset))
        return 0

    return await _with_store(args, body, create=False)


async def cmd_events(args: argparse.Namespace) -> int:
    show: Callable[[Event], str] = dumps_event if args.json else format_event
    filters: dict[str, Any] = {"to": args.to, "types": args.type or None, "actor": args.actor}

    async def body(store: EventStore) -> int:
        printed = 0
        remaining = args.limit
        if args.follow:
            async for event in store.tail(args.from_offset, **filters):
                _emit_line(show(event))
                sys.stdout.flush()
                printed += 1
                if remaining is not None and printed >= remaining:
                    break
            return 0
        offset = args.from_offset
        while remaining is None or printed < remaining:
            size = 1000 if remaining is None else min(1000, remaining - printed)
            page = await store.read(offset, size, **filters)
            for event in page.events:
                _emit_line(show(event))
            printed += len(page.events)
            if len(page.events) < size:
                break
            offset = page.next_offset
        return 0

    return await _with_store(args, body, create=False)


async def cmd_inbox(args: argparse.Namespace) -> int:
    async def body(store: EventStore) -> int:
        mail = SwarmMail(store)
        cursor = await mail.cursor(args.agent)
        start = 0 if args.all else cursor + 1
        offset, shown_cursor = start, False
        while True:
            page = await mail.inbox(args.agent, offset, 1000)
            for event in page.events:
                if args.json:
                    record = event.as_dict() | {"acked": event.offset <= cursor}
                    _emit_line(json.dumps(record, separators=(",", ":")))
                    continue
                if not shown_cursor and event.offset > cursor and args.all:
                    _emit_line(f"{'':>7}  --- cursor {cursor}: acked above, pending below ---")
                    shown_cursor = True
                _emit_line(format_event(event))
            if len(page.events) < 1000:
                break
            offset = page.next_offset
        if not args.json and not args.all:
            print(f"# {args.agent}: cursor {cursor}", file=sys.stderr)
        return 0

    return await _with_store(args, body, create=False)


async def cmd_ack(args: argparse.Namespace) -> int:
    async def body(store: EventStore) -> int:
        mail = SwarmMail(store)
        await mail.ack(args.agent, args.offset)
        _emit_line(str(await mail.cursor(args.agent)))
        return 0

    return await _with_store(args, body, create=False)


async def cmd_cursors(args: argparse.Namespace) -> int:
    async def body(store: EventStore) -> int:
        agents = await SwarmMail(store).agents()
        cursors = await store.cursors()
        head = await store.head()
        rows = [
            {"agent": name, "role": role, "cursor": cursors.get(name, 0),
             "lag": head - cursors.get(name, 0)}
            for name, role in agents.items()
        ]
        if args.json:
            for row in rows:
                _emit_line(json.dumps(row, separators=(",", ":")))
            return 0
        _emit_line(f"{'AGENT':<24} {'ROLE':<12} {'CURSOR':>8} {'LAG':>8}   (head {head})")
        for row in rows:
            _emit_line(printable(
                f"{row['agent']:<24} {row['role'] or '-':<12} {row['cursor']:>8} {row['lag']:>8}"
            ))
        return 0

    return await _with_store(args, body, create=False)


# -- parsing --------------------------------------------------------------------


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sisyphus`` command."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="the swarm's database (default: $SISYPHUS_DB, else .sisyphus/swarm.db)",
    )
    parser = argparse.ArgumentParser(
        prog="sisyphus",
        description="Supervise swarms of coding agents on a durable event log.",
        parents=[db],
    )
    parser.add_argument("--version", action="version", version=f"sisyphus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", parents=[db], help="create the database (if missing)")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("register", parents=[db], help="register an agent: give it an inbox")
    p.add_argument("agent", help="the agent's name")
    p.add_argument("--role", help="its role (planner, executor, ...)")
    p.set_defaults(run=cmd_register)

    p = sub.add_parser("emit", parents=[db], help="append one event, print its offset")
    p.add_argument("type", help="event type (TASK_INIT, MESSAGE, ... or x.anything)")
    p.add_argument("--payload", help="the payload, a JSON object")
    p.add_argument("--actor", help="who writes it")
    p.add_argument("--to", help="recipient agent (must be registered)")
    p.add_argument("--key", help="idempotency key: the same key twice writes once")
    p.set_defaults(run=cmd_emit)

    p = sub.add_parser("events", parents=[db], help="print events; --follow for live ones")
    p.add_argument("--from", dest="from_offset", type=_non_negative, default=0,
                   metavar="N", help="first offset to show (default 0: all)")
    p.add_argument("--limit", type=_non_negative, metavar="N", help="at most N events")
    p.add_argument("--to", help="only events addressed to this agent")
    p.add_argument("--type", action="append", metavar="T", help="only this type (repeatable)")
    p.add_argument("--actor", help="only events written by this actor")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new events, from any process, until interrupted")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_events)

    p = sub.add_parser("send", parents=[db], help="inject a message into an agent's inbox")
    p.add_argument("--to", required=True, help="recipient agent")
    p.add_argument("--from", dest="sender", default="human", help="sender (default: human)")
    p.add_argument("text", help="the message")
    p.set_defaults(run=cmd_send)

    p = sub.add_parser("inbox", parents=[db], help="show an agent's pending messages")
    p.add_argument("agent")
    p.add_argument("--all", action="store_true", help="acked messages too, with the cursor line")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_inbox)

    p = sub.add_parser("ack", parents=[db], help="advance an agent's durable cursor")
    p.add_argument("agent")
    p.add_argument("offset", type=_non_negative)
    p.set_defaults(run=cmd_ack)

    p = sub.add_parser("cursors", parents=[db], help="every agent's cursor and lag")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_cursors)
    return parser


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sisyphus`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not getattr(args, "db", None):
        args.db = default_db()
    # SIGTERM ends --follow as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        code: int = asyncio.run(args.run(args))
        return code
    except SisyphusError as exc:
        print(f"sisyphus: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
