"""The ``sisyphus`` command: write to, read from and follow a swarm's log.

Every error on bad input prints one line to stderr naming the problem and exits
with 2; nothing is written to the database in that case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sisyphus_tui import __version__, narrative
from sisyphus_tui.errors import HostFault, InvalidPayload, SisyphusError
from sisyphus_tui.events import MAX_PAYLOAD_DEPTH
from sisyphus_tui.mail import SwarmMail, check_agent_name
from sisyphus_tui.safe_text import printable, printable_lines
from sisyphus_tui.stream import Event, EventStore, NewEvent, dumps_event, open_store
from sisyphus_tui.stream.base import MAX_OFFSET
from sisyphus_tui.stream.lease import HostLease
from sisyphus_tui.timefmt import clock

if TYPE_CHECKING:
    from sisyphus_tui.agents.config import BrainConfig, RunConfig

EXIT_ERROR = 2
# What a hosting command's exit code says (the README's table): 0 the run is done with
# every gate passed; 3 it is blocked (a verdict: a plan rejected, a gate failing); 4 the
# host stopped on a fault (an agent failed, ...); 128 + N interrupted by signal N (130
# Ctrl-C or `q`, 143 SIGTERM, 129 SIGHUP). Only 0 and 3 are final: run the same command
# again to resume after 4 or an interruption.
EXIT_BLOCKED = 3
EXIT_FAULT = 4
EXIT_INTERRUPTED = 128 + signal.SIGINT
HOSTING = ("demo", "run", "agent")
EXIT_AGENT_FAILED = 1
# Interactive runs are paced so a person can follow them; headless ones run flat out.
WATCH_SPEED = 0.2
DEFAULT_DB = Path(".sisyphus") / "swarm.db"
BRAIN_CHOICES = ("scripted", "claude", "codex", "gemini", "opencode", "acp")


def default_db() -> str:
    """``SISYPHUS_DB``, else ``.sisyphus/swarm.db`` under the current directory."""
    return os.environ.get("SISYPHUS_DB") or str(DEFAULT_DB)


# -- output ---------------------------------------------------------------------


def format_event(event: Event) -> str:
    """A human line for an event: its offset, time, actor and type, then what it says
    (the narrative's summary, the headless output's and the stream pane's); text from
    agents is shown literally, never interpreted."""
    # A message's story says whom it is to; any other event sent somewhere says it here.
    to = f"-> {event.to}  " if event.to and event.type != "MESSAGE" else ""
    line = (
        f"{event.offset:>7}  {clock(event.ts, millis=True)}  {event.actor or '-':<12} "
        f"{event.type:<16} {to}{narrative.summary(event)}"
    )
    return printable(line)


def _emit_line(line: str) -> None:
    sys.stdout.write(line + "\n")


def _say(line: str) -> None:
    """A line for the person, beside a command's output (on stderr)."""
    print(line, file=sys.stderr, flush=True)


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


def _read_payload(source: str | None) -> str | None:
    """The text of ``--payload``: itself, or the contents of ``@FILE``, or stdin for ``-``."""
    if source is None or not (source == "-" or source.startswith("@")):
        return source
    where = "stdin" if source == "-" else source[1:]
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(where).read_bytes()
    except OSError as exc:
        raise InvalidPayload(f"--payload {source}: cannot read {where}: "
                             f"{exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidPayload(f"--payload {source}: not valid UTF-8 (byte "
                             f"0x{data[exc.start]:02x} at position {exc.start})") from None


def _parse_payload(text: str | None) -> Any:
    """The JSON value of ``--payload`` text (the event's encoder checks the rest)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"malformed JSON in --payload: {exc}") from None
    except RecursionError:
        raise InvalidPayload(f"--payload is nested deeper than {MAX_PAYLOAD_DEPTH} "
                             "levels") from None
    except ValueError:
        # Python refuses to read an integer of more than 4300 digits.
        raise InvalidPayload("--payload has an integer out of range (payload integers "
                             "are 64-bit)") from None


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
    text = await asyncio.to_thread(_read_payload, args.payload)
    event = NewEvent.of(
        args.type, _parse_payload(text), actor=args.actor, to=args.to, key=args.key
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


# -- the swarm --------------------------------------------------------------------


def _triggers(texts: list[str] | None) -> tuple[Any, ...]:
    from sisyphus_tui.runtime import Trigger

    return tuple(Trigger.parse(t) for t in texts or [])


def _run_config(args: argparse.Namespace, workspace: Path) -> RunConfig:
    """Which brain each role thinks with: the workspace's ``.sisyphus/config.toml`` for
    ``run``, the scripted brain for the demo, and ``--brain`` over either."""
    from sisyphus_tui.agents.config import RunConfig, load_config

    config = load_config(workspace) if args.command == "run" else RunConfig()
    return config.overridden(args.brain) if args.brain else config


def _brains(config: RunConfig, ledger: Any = None) -> dict[str, BrainConfig]:
    """The brain each role will think with: as AGENT_SPAWNED recorded it for an agent
    already spawned (a resume rebuilds that one, whatever the config says now), else
    as the config gives it."""
    from sisyphus_tui.agents.config import ROLES_CONFIGURED, BrainConfig

    brains: dict[str, BrainConfig] = {}
    for role in ROLES_CONFIGURED:
        current = config.for_role(role)
        view = ledger.agents.get(role) if ledger is not None else None
        if view is not None and view.brain:
            try:
                current = BrainConfig.from_record(
                    view.brain_config or {"backend": view.brain}, current)
            except ValueError:
                pass  # an older version's record: the config's, as the runtime does
        brains[role] = current
    return brains


def _refuse_scripted(brains: dict[str, BrainConfig], goal: str, workspace: Path) -> None:
    """The scripted brain plays the demo's script in the demo's sample and nothing
    else: anywhere else it would write the demo's files into the user's repository."""
    from sisyphus_tui.agents.config import CONFIG_FILE
    from sisyphus_tui.demo.script import GOAL

    scripted = [role for role in ("planner", "validator", "executor")
                if brains[role].backend == "scripted"]
    demo = goal == GOAL and (workspace / "tools" / "check_sql.py").is_file()
    if scripted and not demo:
        raise SisyphusError(
            f"the scripted brain only plays the demo ({', '.join(scripted)} would use it "
            f"here): choose a real agent with --brain claude (or codex, gemini, opencode, "
            f"acp), or a [brain] table in {workspace / CONFIG_FILE}")


def _check_backends(brains: dict[str, BrainConfig], workspace: Path) -> None:
    """Refuse, before anything is written, a run whose agents cannot start: a missing
    binary, or an ACP agent without its command (AgentUnavailable names it)."""
    from sisyphus_tui.agents import backend
    from sisyphus_tui.agents.base import AgentRequest

    for role, brain in brains.items():
        if brain.backend not in BRAIN_CHOICES[1:]:
            continue  # the scripted brain (or a test's own): nothing to start
        if brain.backend == "acp" and not brain.command:
            raise SisyphusError(f"the {role}'s acp brain needs its command: command = "
                                "['opencode', 'acp'] in .sisyphus/config.toml")
        backend(brain.backend).executable(AgentRequest(
            prompt="", workspace=workspace, env=dict(brain.env), command=brain.command))


async def _run_swarm(store: EventStore, workspace: Path, args: argparse.Namespace,
                     lease: HostLease, config: RunConfig) -> int:
    from sisyphus_tui.runtime import Swarm

    swarm = Swarm(store, workspace, speed=args.speed, stale_after_s=args.stale_after,
                  wipes=_triggers(args.wipe), out=_progress, lease=lease, config=config)
    try:
        ledger = await swarm.run()
    except HostFault as exc:
        _stopped(f"stopped by a fault: {exc}", swarm.ledger)
        return EXIT_FAULT
    except asyncio.CancelledError:
        _stopped("interrupted", swarm.ledger)
        raise
    done, total = ledger.progress()
    if ledger.phase == "done":
        _progress(f"done: {done}/{total} steps, every gate passed; "
                  f"ledger: {workspace / 'SISYPHUS_LEDGER.md'}")
        return 0
    if ledger.phase != "blocked":  # a `stop` request: the run is not over
        _stopped("stopped on request", ledger)
        return EXIT_FAULT
    _blocked(ledger.phase_reason or ledger.phase)
    return EXIT_BLOCKED


def _blocked(reason: str) -> None:
    """Say why the run is blocked, whole: a test run's output keeps its lines (every
    other control character still escaped), the last one the verdict to read."""
    print(f"sisyphus: blocked: {printable_lines(reason.rstrip())}", file=sys.stderr)


def _stopped(why: str, ledger: Any) -> None:
    """Say where an unfinished run stopped, and how to carry on (on one line: a fault's
    multi-line text is cut to its first and last meaningful lines)."""
    done, total = ledger.progress()
    why = narrative.headline(why)
    print(printable(f"sisyphus: {why}; the run stopped at offset {ledger.offset} (phase "
                    f"{ledger.phase}, {done}/{total} steps done): run the same command to "
                    "resume"), file=sys.stderr, flush=True)


def _progress(line: str) -> None:
    _emit_line(time.strftime("%H:%M:%S ") + line)
    sys.stdout.flush()


async def _demo_setup(args: argparse.Namespace) -> tuple[dict[str, Any] | None, RunConfig]:
    """The demo's spec and config, every option checked before anything is written or
    removed; then, with ``--fresh``, the demo started over (saying what goes)."""
    from sisyphus_tui.demo.runner import load_spec_file, start_over

    spec = load_spec_file(Path(args.spec)) if args.spec else None
    workspace = Path(args.workspace)
    _triggers(args.wipe)  # refuse a bad --wipe before anything is written
    config = _run_config(args, workspace)
    _check_backends(_brains(config), workspace)
    if args.fresh:
        if "://" in args.db:
            raise SisyphusError("--fresh removes a database file: give --db as a path")
        await start_over(Path(args.db), workspace, _say)
    return spec, config


async def cmd_demo(args: argparse.Namespace) -> int:
    from sisyphus_tui.demo.runner import prepare_demo

    spec, config = await _demo_setup(args)
    workspace = Path(args.workspace)

    async def body(store: EventStore) -> int:
        # The lease first: a second host is refused before it touches the workspace.
        async with await store.host_lease() as lease:
            resumed = await prepare_demo(store, workspace, spec)
            _progress(("resuming the demo in " if resumed else "demo workspace: ")
                      + str(workspace))
            return await _run_swarm(store, workspace, args, lease, config)

    return await _with_store(args, body, create=True)


async def cmd_run(args: argparse.Namespace) -> int:
    from sisyphus_tui.demo.runner import (
        check_workspace,
        current_task,
        load_spec_file,
        start_task,
        task_workspace,
    )

    spec = load_spec_file(Path(args.spec)) if args.spec else {}
    _triggers(args.wipe)
    if _no_database(args.db):
        # A new run: what would refuse it is known before the log is even made.
        if not args.goal:
            raise SisyphusError("this database has no task yet: pass --goal (and --spec, "
                                "--workspace), or start the demo with `sisyphus demo`")
        workspace = Path(args.workspace or args.cwd)
        _refuse_scripted(_brains(_run_config(args, workspace)), args.goal, workspace)
        _check_backends(_brains(_run_config(args, workspace)), workspace)

    async def body(store: EventStore) -> int:
        async with await store.host_lease() as lease:
            task = await current_task(store)
            if task is None:
                if not args.goal:
                    raise SisyphusError("this database has no task yet: pass --goal (and "
                                        "--spec, --workspace), or start the demo with "
                                        "`sisyphus demo`")
                workspace = Path(args.workspace or args.cwd)
                config = _run_config(args, workspace)
                _refuse_scripted(_brains(config), args.goal, workspace)
                _check_backends(_brains(config), workspace)
                await start_task(store, workspace, args.goal, spec)
            else:
                own = task_workspace(task)
                workspace = Path(args.workspace) if args.workspace else (own or Path(args.cwd))
                check_workspace(task, workspace)
                goal = str(task.payload.get("goal", ""))
                if args.goal and args.goal != goal:
                    print(printable(f"sisyphus: this database's run has its goal ({goal}): "
                                    "--goal is not used; to start another run, give it "
                                    "another --db"), file=sys.stderr, flush=True)
                config = _run_config(args, workspace)
                brains = _brains(config, await _ledger_from_log(store))
                _refuse_scripted(brains, str(task.payload.get("goal", "")), workspace)
                _check_backends(brains, workspace)
            return await _run_swarm(store, workspace, args, lease, config)

    return await _with_store(args, body, create=True)


def _existing_folder(path: str) -> Path:
    """``path`` resolved, refused unless it is a folder (checked before the loop's
    first await, so nothing is written for a mistyped one)."""
    real = Path(os.path.realpath(path))
    if not real.is_dir():
        raise SisyphusError(f"no such workspace folder: {real}")
    return real


async def cmd_agent(args: argparse.Namespace) -> int:
    from sisyphus_tui.agents.config import BrainConfig, ConfigError, load_config
    from sisyphus_tui.agents.solo import run_solo

    workspace = _existing_folder(args.workspace or args.cwd)
    name = args.name or args.backend
    check_agent_name(name)
    if not args.prompt.strip():
        raise SisyphusError("the prompt is empty: say what the agent should do")
    if args.backend == "acp" and not args.command_line:
        raise SisyphusError("the acp backend needs the agent's command: --command "
                            "'opencode acp' (or 'gemini --acp', ...)")
    # The workspace's config for this backend (model, args, env), the flags over it.
    loaded = load_config(workspace)
    base = loaded.overridden(args.backend).brain
    fields: dict[str, Any] = base.model_dump()
    if args.model:
        fields["model"] = args.model
    if args.command_line:
        fields["command"] = args.command_line
    try:
        config = BrainConfig.model_validate(fields)
    except ValueError as exc:
        raise ConfigError(f"invalid agent settings: {exc}") from None

    def show(event: Any) -> None:
        if args.verbose and event.kind != "raw":
            print(printable(f"[{event.kind}] {event.text or event.data}")[:300],
                  file=sys.stderr, flush=True)

    async def body(store: EventStore) -> int:
        result = await run_solo(store, config, args.prompt, workspace, name, on_event=show,
                                prices=loaded.prices)
        if result.ok:
            _emit_line(printable_lines(result.text.rstrip("\n")))
            return 0
        print(f"sisyphus: {name}: {printable(result.error or 'failed')}", file=sys.stderr)
        return EXIT_AGENT_FAILED

    return await _with_store(args, body, create=True)


async def _ledger_from_log(store: EventStore) -> Any:
    from sisyphus_tui.ledger import Ledger

    ledger = Ledger()
    offset = 0
    while True:
        page = await store.read(offset, 5000)
        for event in page.events:
            ledger.apply(event)
        if not page.events:
            return ledger
        offset = page.next_offset


async def cmd_ledger(args: argparse.Namespace) -> int:
    from sisyphus_tui.ledger import write_atomically

    async def body(store: EventStore) -> int:
        text = (await _ledger_from_log(store)).render()
        if args.out:
            await asyncio.to_thread(write_atomically, Path(args.out), text)
        else:
            sys.stdout.write(text)
        return 0

    return await _with_store(args, body, create=False)


NO_HOST = ("no host: nothing runs this swarm; `sisyphus demo` or `sisyphus run` resumes "
           "it")


def _host_line(host: Any, ledger: Any) -> str:
    """Who hosts the swarm, or that nobody does (and, unless the run is over, how to
    have it carried on)."""
    if host is not None:
        return f"host: {host.describe()}"
    if ledger.over():
        return f"no host: the run is {ledger.phase}"
    return NO_HOST


async def cmd_agents(args: argparse.Namespace) -> int:
    async def body(store: EventStore) -> int:
        ledger = await _ledger_from_log(store)
        host = store.current_host()
        head = await store.head()
        cursors = await store.cursors()
        now = time.time()
        rows = []
        for agent in sorted(ledger.agents.values(), key=lambda a: a.name):
            cursor = max(agent.cursor, cursors.get(agent.name, 0))
            newest = await store.last(to=agent.name)
            pending = 0 if newest is None or newest.offset <= cursor else len(
                (await store.read(cursor + 1, 10_000, to=agent.name)).events)
            # ``shown`` is the truth a person needs (paused, blocked, no host), as the
            # TUI shows it; ``state`` the same as one word (``needs_input``, ``no_host``);
            # ``said`` what the agent itself last said.
            shown = ledger.shown_state(agent, hosted=host is not None)
            rows.append({"agent": agent.name, "role": agent.role, "skill": agent.skill,
                         "state": shown.replace(" ", "_"), "shown": shown,
                         "said": agent.state,
                         "tokens_in": agent.tokens_in, "tokens_out": agent.tokens_out,
                         "tokens_cached": agent.tokens_cached,
                         "cost_usd": round(agent.cost_usd, 6),
                         "cost_is_estimate": agent.cost_is_estimate,
                         "thinking": agent.thinking, "cursor": cursor,
                         "lag": head - cursor, "pending": pending,
                         # A host whose clock is ahead writes future time stamps.
                         "last_active_s": round(max(now - agent.last_ts, 0.0), 1)
                         if agent.last_ts else None, "detail": agent.detail})
        if args.json:
            for row in rows:
                _emit_line(json.dumps(row, separators=(",", ":")))
            return 0
        _emit_line(printable(_host_line(host, ledger)))
        _emit_line(f"{'AGENT':<16} {'ROLE':<11} {'STATE':<11} {'PENDING':>7} {'ACTIVE':>8} "
                   f"{'COST':>9}  DOING")
        for row in rows:
            age = "-" if row["last_active_s"] is None else f"{row['last_active_s']:.0f}s ago"
            spent = ledger.agents[row["agent"]]
            cost = "-" if not (spent.cost_usd or spent.tokens_in or spent.tokens_out) else \
                ("~" if spent.cost_is_estimate else "") + f"${spent.cost_usd:.4f}"
            _emit_line(printable(
                f"{row['agent']:<16} {row['role']:<11} {row['shown']:<11} {row['pending']:>7} "
                f"{age:>8} {cost:>9}  {narrative.headline(row['detail'], 80)}"))
        return 0

    return await _with_store(args, body, create=False)


async def cmd_cost(args: argparse.Namespace) -> int:
    from sisyphus_tui.usage import Usage, cost_text

    async def body(store: EventStore) -> int:
        ledger = await _ledger_from_log(store)
        spend = ledger.spend()
        if args.json:
            _emit_line(json.dumps({
                "run": spend.run.record(),
                "roles": {role: used.record() for role, used in spend.roles.items()},
                "agents": {name: {"role": ledger.agents[name].role if name in ledger.agents
                                  else "-", **used.record()}
                           for name, used in spend.agents.items()}},
                separators=(",", ":")))
            return 0
        if not spend.run.spent:
            _emit_line("nothing spent yet: no agent has reported usage")
            return 0

        def line(name: str, role: str, used: Usage) -> str:
            return printable(f"{name:<16} {role:<11} {used.tokens_in:>10} {used.tokens_out:>9} "
                             f"{used.tokens_cached:>9} {cost_text(used):>11}")

        _emit_line(f"{'AGENT':<16} {'ROLE':<11} {'TOKENS IN':>10} {'OUT':>9} {'CACHED':>9} "
                   f"{'COST':>11}")
        for name, used in spend.agents.items():
            view = ledger.agents.get(name)
            _emit_line(line(name, view.role if view is not None else "-", used))
        _emit_line("")
        _emit_line(f"{'ROLE':<28} {'TOKENS IN':>10} {'OUT':>9} {'CACHED':>9} {'COST':>11}")
        for role, used in spend.roles.items():
            _emit_line(line(role, "", used))
        _emit_line("")
        _emit_line(line("run", "", spend.run))
        if spend.run.cost_is_estimate:
            unpriced = ("; a model with no price in the table counts as $0 (add "
                        "[prices.\"MODEL\"] to .sisyphus/config.toml)"
                        if spend.run.unpriced else "")
            _emit_line(f"~: estimated from the price table: the backend gave tokens but no "
                       f"cost{unpriced}")
        return 0

    return await _with_store(args, body, create=False)


EXIT_PROBLEMS = 1


def event_problem(event: Event) -> str | None:
    """Why a stored event cannot be read as its type says (None: it can)."""
    from pydantic import ValidationError

    from sisyphus_tui.events import REGISTRY, describe_validation
    from sisyphus_tui.stream.base import UNDECODABLE

    if UNDECODABLE in event.payload:
        return str(event.payload[UNDECODABLE])
    model = REGISTRY.get(event.type)
    if model is None:
        return None if event.type.startswith("x.") else f"unknown event type {event.type!r}"
    try:
        model.model_validate(event.payload)
    except ValidationError as exc:
        return f"invalid payload: {describe_validation(exc)}"
    return None


async def _doctor_backends(workspace: Path) -> list[str]:
    """One line per coding-agent backend: installed (path, version) or what is
    missing, and which roles the workspace's config gives it; returns the problems (a
    role configured on a CLI that is not there, a config that cannot be read)."""
    from sisyphus_tui.agents import BACKENDS, installed
    from sisyphus_tui.agents.config import ROLES_CONFIGURED, ConfigError, load_config

    problems: list[str] = []
    try:
        config = load_config(workspace)
    except ConfigError as exc:
        problems.append(f"config: {exc}")
        _emit_line(printable(problems[-1]))
        config = None
    found = await asyncio.gather(*(installed(name) for name in BACKENDS))
    for name, (path, version) in zip(BACKENDS, found, strict=True):
        # (The kernel coordinates; it never thinks, so no agent runs for it.)
        roles = [r for r in ROLES_CONFIGURED if r != "kernel" and config is not None
                 and config.for_role(r).backend == name]
        used = f"; configured for {', '.join(roles)}" if roles else ""
        healthy = path is not None and "failed" not in version
        where = f"{path} ({version})" if healthy else version
        _emit_line(printable(f"backend {name}: {where}{used}"))
        if roles and not healthy and name != "acp":
            problems.append(f"{', '.join(roles)} would run on {name}, which cannot start")
    return problems


def _no_database(path: str) -> bool:
    """Whether nothing is at ``path`` yet (checked before anything opens it)."""
    return not os.path.lexists(path)


async def cmd_doctor(args: argparse.Namespace) -> int:
    if _no_database(args.db):
        # Nothing to check in a log yet; the agents this folder would run are.
        _emit_line(printable(f"database: none yet at {args.db} (nothing to check)"))
        problems = await _doctor_backends(Path(args.cwd))
        for problem in problems:
            _emit_line(printable(f"problem: {problem}"))
        _emit_line("no problems found" if not problems else f"{len(problems)} problem(s)")
        return EXIT_PROBLEMS if problems else 0

    async def body(store: EventStore) -> int:
        from sisyphus_tui.demo.runner import current_task, task_workspace
        from sisyphus_tui.stream.sqlite import SQLiteStore

        head = await store.head()
        integrity = await store.integrity_check() if isinstance(store, SQLiteStore) else "ok"
        _emit_line(printable(f"database: {store.location} (head {head}, integrity "
                             f"{integrity.splitlines()[0] if integrity else '?'})"))
        host = store.current_host()
        _emit_line(f"host: {host.describe()}" if host else "host: none (nobody runs this "
                   "swarm now)")
        bad = 0
        offset = 0
        while True:
            page = await store.read(offset, 5000)
            for event in page.events:
                problem = event_problem(event)
                if problem is not None:
                    bad += 1
                    _emit_line(printable(f"event {event.offset} ({event.type}): {problem}"))
            if not page.events:
                break
            offset = page.next_offset
        task = await current_task(store)
        problems = await _doctor_backends((task_workspace(task) if task else None)
                                          or Path(args.cwd))
        for problem in problems:
            _emit_line(printable(f"problem: {problem}"))
        ok = bad == 0 and integrity == "ok" and not problems
        _emit_line("no problems found" if ok else
                   f"{bad} of {head} events cannot be read as their type says (readers skip "
                   "them)" if bad else "the database file is damaged (integrity check)"
                   if integrity != "ok" else f"{len(problems)} problem(s)")
        return 0 if ok else EXIT_PROBLEMS

    return await _with_store(args, body, create=False)


WAITS_FOR_HOST = ("no host runs this swarm now: the request waits for one (`sisyphus demo` "
                  "or `sisyphus run` carries it out when it resumes the run)")


async def _steer(store: EventStore, event: NewEvent, action: str, what: str, *,
                 agent: str | None = None, gate: str | None = None,
                 out: Callable[[str], None] | None = None) -> int:
    """Append the CONTROL request ``event`` unless the run would not carry it out (one
    line, exit 2, nothing written); say what was requested, at which offset, and that it
    waits when nothing hosts the swarm. Returns the request's offset."""
    say = out or _emit_line
    refusal = (await _ledger_from_log(store)).refusal(action, agent, gate=gate)
    if refusal is not None:
        raise SisyphusError(refusal)
    (offset,) = await store.append_many([event])
    say(printable(f"{what} requested (event {offset})"))
    if store.current_host() is None:
        say(WAITS_FOR_HOST)
    return offset


async def _control(args: argparse.Namespace, payload: dict[str, Any], what: str,
                   check: Callable[[EventStore], Awaitable[None]] | None = None) -> int:
    """Ask the running swarm for ``payload`` (a CONTROL request): see ``_steer``."""
    event = NewEvent.of("CONTROL", payload, actor=args.sender, to="swarm")
    agent = payload.get("agent")

    async def body(store: EventStore) -> int:
        if agent is not None:
            await SwarmMail(store).require(agent)
        if check is not None:
            await check(store)
        await _steer(store, event, str(payload["action"]), what, agent=agent,
                     gate=payload.get("gate"))
        return 0

    return await _with_store(args, body, create=False)


async def cmd_wipe(args: argparse.Namespace) -> int:
    held = f" (held until `sisyphus resume {args.agent}`)" if args.hold else ""
    return await _control(args, {"action": "wipe", "agent": args.agent, "hold": args.hold},
                          f"wipe {args.agent}{held}")


async def cmd_resume(args: argparse.Namespace) -> int:
    return await _control(args, {"action": "resume", "agent": args.agent},
                          f"resume {args.agent}")


async def cmd_cancel(args: argparse.Namespace) -> int:
    return await _control(args, {"action": "cancel", "agent": args.agent},
                          f"cancel of {args.agent}'s turn")


async def cmd_restart(args: argparse.Namespace) -> int:
    return await _control(args, {"action": "restart", "agent": args.agent},
                          f"restart of {args.agent}'s turn")


async def cmd_answer(args: argparse.Namespace) -> int:
    """Answer an agent's permission request (its oldest waiting, or ``--request``)."""
    from sisyphus_tui import permissions

    async def body(store: EventStore) -> int:
        ledger = await permissions.permission_ledger(store)
        view = ledger.agents.get(args.agent)
        request = args.request
        if view is not None and request is None and view.asking:
            request = min(view.asking, key=lambda r: float(view.asking[r].get("ts") or 0))
        asked = view.asking.get(request or "") if view is not None else None
        offset = await permissions.answer(
            store, args.agent, args.decision, request=request, always=args.always,
            message=args.message or "", actor=args.sender, ledger=ledger)
        tool = str(asked.get("tool")) if asked else "?"
        done = "allowed" if args.decision == "allow" else "denied"
        always = " for the rest of the run" if args.always and args.decision == "allow" \
            else ""
        _emit_line(printable(f"{done} {tool} for {args.agent}{always} (request {request}, "
                             f"event {offset})"))
        left = len(view.asking) - 1 if view is not None else 0
        if left > 0:
            _emit_line(f"{args.agent} has {left} more request(s) waiting")
        return 0

    return await _with_store(args, body, create=False)


async def cmd_pause(args: argparse.Namespace) -> int:
    return await _control(args, {"action": "pause"}, "pause")


async def cmd_unpause(args: argparse.Namespace) -> int:
    return await _control(args, {"action": "unpause"}, "unpause")


async def cmd_approve(args: argparse.Namespace) -> int:
    async def check(store: EventStore) -> None:
        from sisyphus_tui.conductor import parse_spec
        from sisyphus_tui.demo.runner import current_task

        task = await current_task(store)
        if task is None:
            raise SisyphusError("this database has no run: nothing to approve")
        gate = parse_spec({k: v for k, v in task.payload.get("spec", {}).items()}).gate(
            args.gate)
        if not gate.human:
            raise SisyphusError(f"gate {args.gate!r} is a command gate: it passes by "
                                "passing, not by approval")

    return await _control(args, {"action": "approve", "gate": args.gate},
                          f"approval of gate {args.gate}", check)


async def cmd_spawn(args: argparse.Namespace) -> int:
    from sisyphus_tui.skills import get_skill

    check_agent_name(args.name)
    get_skill(args.skill, Path(args.workspace) if args.workspace else None)
    event = NewEvent.of("CONTROL", {
        "action": "spawn", "skill": args.skill, "agent": args.name, "prompt": args.prompt,
        "background": args.background, "thinking": args.thinking, "parent": "human"},
        actor="human", to="swarm")

    async def body(store: EventStore) -> int:
        if await SwarmMail(store).is_registered(args.name):
            raise SisyphusError(f"agent {args.name!r} exists already: choose another name")
        head = await store.head()
        # In the foreground stdout is the agent's result: the request is said on stderr.
        offset = await _steer(store, event, "spawn", f"spawn {args.name} (skill {args.skill})",
                              agent=args.name, out=_emit_line if args.background else _say)
        if args.background:
            return 0
        # Foreground: wait for the agent's result, delivered to the human's inbox.
        async def result() -> Event:
            async for reply in store.tail(head + 1, to="human"):
                data = reply.payload.get("data", {})
                if reply.payload.get("kind") == "result" and data.get("agent") == args.name:
                    return reply
            raise AssertionError("unreachable")

        try:
            reply = await asyncio.wait_for(result(), args.timeout)
        except TimeoutError:
            raise SisyphusError(f"no result from {args.name!r} within {args.timeout:g}s "
                                f"(spawn request at offset {offset}; is a swarm running? "
                                "`sisyphus run --headless` or the demo)") from None
        # The reply's own line breaks stay (an agent's literal text "\x0a" stays text).
        _emit_line(printable_lines(str(reply.payload.get("text", ""))))
        return 0

    return await _with_store(args, body, create=False)


# -- the TUI ----------------------------------------------------------------------


# -- workspace checkpoints ---------------------------------------------------------


def _workspace_commit(event: Event | None) -> str | None:
    """The shadow commit a CHECKPOINT left the workspace at (None: it carries none)."""
    if event is None or event.type != "CHECKPOINT":
        return None
    sha = event.payload.get("workspace")
    ok = isinstance(sha, str) and 40 <= len(sha) <= 64 and all(c in "0123456789abcdef"
                                                                for c in sha)
    return sha if ok else None


async def _checkpoint_workspace(store: EventStore, args: argparse.Namespace) -> Path:
    """The workspace the checkpoints are of: the run's own (``--workspace`` naming
    another is refused), else ``--workspace``, else the current folder."""
    from sisyphus_tui.demo.runner import check_workspace, current_task, task_workspace

    task = await current_task(store)
    if args.workspace:
        if task is not None:
            check_workspace(task, Path(args.workspace))
        return Path(args.workspace)
    return (task_workspace(task) if task is not None else None) or Path(args.cwd)


async def _workspace_checkpoints(store: EventStore) -> list[Event]:
    """Every CHECKPOINT that carries a workspace commit, oldest first."""
    found: list[Event] = []
    offset = 0
    while True:
        page = await store.read(offset, 5000, types=["CHECKPOINT"])
        found += [event for event in page.events if _workspace_commit(event)]
        if not page.events:
            return found
        offset = page.next_offset


def _checkpoint_name(event: Event, sha: str) -> str:
    step = event.payload.get("step")
    return (f"checkpoint {event.offset} ({event.payload.get('agent') or event.actor or '-'}"
            f"{'' if step is None else f', step {step}'}, commit {sha[:12]})")


async def cmd_checkpoints(args: argparse.Namespace) -> int:
    """List the checkpoints that carry a workspace commit, and how far each is from
    the workspace now."""
    from sisyphus_tui.shadow import Shadow, ShadowError

    async def body(store: EventStore) -> int:
        workspace = await _checkpoint_workspace(store, args)
        events = await _workspace_checkpoints(store)
        shas = sorted({sha for sha in map(_workspace_commit, events) if sha})
        differs: dict[str, list[tuple[str, str]] | None] = {}
        if shas:
            try:
                differs = await Shadow(workspace).compare(shas)
            except ShadowError as exc:
                _say(printable(f"sisyphus: not compared with the workspace: {exc}"))
        rows: list[dict[str, Any]] = []
        for event in events:
            sha = _workspace_commit(event) or ""
            changed = differs.get(sha)
            rows.append({"offset": event.offset, "ts": event.ts,
                         "agent": event.payload.get("agent") or event.actor,
                         "step": event.payload.get("step"), "workspace": sha,
                         "differs": None if changed is None else len(changed)})
        if args.json:
            for row in rows:
                _emit_line(json.dumps(row, separators=(",", ":")))
            return 0
        _emit_line(printable(f"workspace: {workspace}"))
        if not rows:
            _emit_line("no workspace checkpoints in this log (an agent that acts on the "
                       "workspace records one at each checkpoint)")
            return 0
        _emit_line(f"{'OFFSET':>7}  {'TIME':<8}  {'AGENT':<16} {'STEP':>4}  {'COMMIT':<12}  "
                   "DIFFERS")
        for row in rows:
            n = row["differs"]
            shown = "unknown commit" if n is None else f"{n} file{'' if n == 1 else 's'}"
            step = "-" if row["step"] is None else str(row["step"])
            _emit_line(printable(
                f"{row['offset']:>7}  {clock(float(row['ts'])):<8}  {row['agent'] or '-':<16} "
                f"{step:>4}  {str(row['workspace'])[:12]:<12}  {shown}"))
        return 0

    return await _with_store(args, body, create=False)


def _confirm(question: str) -> bool:
    """Ask on the terminal; only ``y`` or ``yes`` says yes (end of input says no)."""
    sys.stderr.write(question)
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _agents_running(workspace: Path) -> list[str]:
    """The agents ``sisyphus agent`` runs in ``workspace`` now (each holds a lock on its
    folder's running.lock while it runs): ``name (pid N)``."""
    import fcntl

    from sisyphus_tui.agents.config import AGENTS_FOLDER

    found = []
    for lock in sorted((workspace / AGENTS_FOLDER).glob("*/running.lock")):
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            found.append(f"{lock.parent.name} (pid {holder})")
        finally:
            os.close(fd)
    return found


async def cmd_restore(args: argparse.Namespace) -> int:
    """Put the workspace back as a checkpoint left it, after saying what that changes."""
    from sisyphus_tui.shadow import Shadow

    async def body(store: EventStore) -> int:
        refusal = ("a host runs this swarm ({}): its agents work in the workspace; stop "
                   "it before restoring")
        host = store.current_host()
        if host is not None:
            raise SisyphusError(refusal.format(host.describe()))
        found = await store.read_offsets([args.offset])
        event = found[0] if found else None
        sha = _workspace_commit(event)
        if event is None or sha is None:
            raise SisyphusError(f"event {args.offset} is not a checkpoint with a workspace "
                                "commit (`sisyphus checkpoints` lists them)")
        workspace = await _checkpoint_workspace(store, args)
        running = await asyncio.to_thread(_agents_running, workspace)
        if running:
            raise SisyphusError(f"agent {running[0]} is running in {workspace} (`sisyphus "
                                "agent`): wait for it before restoring")
        shadow = Shadow(workspace)
        changes = await shadow.changes(sha)
        name = _checkpoint_name(event, sha)
        if not changes:
            _emit_line(printable(f"{workspace} is as {name} left it: nothing to restore"))
            return 0
        count = f"{len(changes)} file{'' if len(changes) == 1 else 's'}"
        _emit_line(printable(f"restoring {name} changes {count} in {workspace}:"))
        for letter, path in changes:
            _emit_line(f"{letter} {printable(path)}")
        if not args.yes:
            if not sys.stdin.isatty():
                _say("sisyphus: nothing changed: add --yes to restore (no terminal to ask)")
                return EXIT_ERROR
            if not await asyncio.to_thread(_confirm, f"restore these {count}? [y/N] "):
                _say("not restored: nothing changed")
                return EXIT_AGENT_FAILED
        # Held while the files change, so no host starts its agents on a workspace half
        # put back (HostBusy says who, if one started since).
        async with await store.host_lease():
            done = await shadow.restore(sha)
        kept = await shadow.latest()
        _emit_line(printable(f"restored {name}: {len(done)} file"
                             f"{'' if len(done) == 1 else 's'} changed; the workspace as "
                             f"it was is kept as shadow commit {(kept or '-')[:12]}"))
        return 0

    return await _with_store(args, body, create=False)


def run_tui(args: argparse.Namespace) -> int:
    """Open the app on the database (and, for the demo, run the swarm inside it)."""
    # Textual reads keys from stdin and draws on stderr.
    if not (sys.stderr.isatty() and sys.stdin.isatty()):
        raise SisyphusError("the TUI needs a terminal; use --headless (or `sisyphus events "
                            "--follow`) when output is not a terminal")
    if args.low_bandwidth:
        # Read by Textual when it is imported: set before the app module loads.
        os.environ.setdefault("TEXTUAL_FPS", "10")
        os.environ["TEXTUAL_ANIMATIONS"] = "none"
    return asyncio.run(_tui(args))


async def _tui(args: argparse.Namespace) -> int:
    from sisyphus_tui.tui.app import SisyphusApp

    host = None
    workspace: Path | None = None
    demo = await _demo_setup(args) if args.command == "demo" else None
    store = await open_store(args.db, create=args.command == "demo")
    async with store, contextlib.AsyncExitStack() as stack:
        if demo is not None:
            from sisyphus_tui.demo.runner import prepare_demo
            from sisyphus_tui.runtime import Swarm

            spec, config = demo
            workspace = Path(args.workspace)
            lease = await stack.enter_async_context(await store.host_lease())
            await prepare_demo(store, workspace, spec)
            host = Swarm(store, workspace, speed=args.speed, stale_after_s=args.stale_after,
                         wipes=_triggers(args.wipe), lease=lease, config=config)
        else:
            from sisyphus_tui.demo.runner import current_task, task_workspace

            task = await current_task(store)
            workspace = task_workspace(task) if task else None
        app = SisyphusApp(store, workspace=workspace, host=host,
                          low_bandwidth=args.low_bandwidth)
        received: list[int] = []

        def stop(signum: int) -> None:
            received.append(signum)
            app.exit(return_code=128 + signum)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, stop, signum)
        await app.run_async(mouse=not args.no_mouse)
        outcome, fault = app.outcome, app.host_fault
    crashed = app.return_code not in (None, 0) and not received
    if crashed:
        print("sisyphus: the TUI stopped on an error (above)", file=sys.stderr)
        return app.return_code or 1
    if host is None:
        return 0  # a viewer: quitting it never stops anything
    if fault is not None:
        _stopped(f"stopped by a fault: {fault}", host.ledger)
        return EXIT_FAULT
    if outcome is not None and outcome.phase == "done":
        return 0
    if outcome is not None and outcome.phase == "blocked":
        _blocked(outcome.phase_reason)
        return EXIT_BLOCKED
    _stopped("interrupted", host.ledger)
    return 128 + received[0] if received else EXIT_INTERRUPTED


# -- parsing --------------------------------------------------------------------


def _offset(text: str) -> int:
    """An offset or a count: a whole number from 0 to the log's largest offset."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
    if not 0 <= value <= MAX_OFFSET:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_OFFSET}: {text[:40]}")
    return value


def _seconds(text: str) -> float:
    """A duration: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more: {text[:40]}")
    return value


def _text(text: str) -> str:
    """A text argument: valid UTF-8. Bytes that are not arrive from argv as lone
    surrogates (surrogateescape), which no event can hold."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            byte = ord(text[exc.start]) - 0xDC00
            shown = f"byte 0x{byte:02x}" if 0x80 <= byte <= 0xFF else "a lone surrogate"
            raise argparse.ArgumentTypeError(
                f"not valid UTF-8 ({shown} at index {exc.start})") from None
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line on stderr (exit 2), and every text argument
    checked to be valid UTF-8."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if kwargs.get("action", "store") in ("store", "append") and "type" not in kwargs:
            kwargs["type"] = _text
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, printable(f"sisyphus: error: {message} (see "
                                        f"'{self.prog} --help')") + "\n")


PAYLOAD_HELP = (
    "the payload, a JSON object; @FILE reads it from FILE, - from stdin (for payloads "
    f"beyond the argument length limit). At most {MAX_PAYLOAD_DEPTH} levels deep, "
    "integers 64-bit (-2**63 to 2**64-1), text valid Unicode"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sisyphus`` command."""
    db = _Parser(add_help=False)
    db.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="the swarm's database (default: $SISYPHUS_DB, else .sisyphus/swarm.db)",
    )
    parser = _Parser(
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
    p.add_argument("--payload", metavar="JSON|@FILE|-", help=PAYLOAD_HELP)
    p.add_argument("--actor", help="who writes it")
    p.add_argument("--to", help="recipient agent (must be registered)")
    p.add_argument("--key", help="idempotency key: the same key twice writes once")
    p.set_defaults(run=cmd_emit)

    p = sub.add_parser("events", parents=[db], help="print events; --follow for live ones")
    p.add_argument("--from", dest="from_offset", type=_offset, default=0,
                   metavar="N", help=f"first offset to show (default 0: all; at most "
                   f"{MAX_OFFSET})")
    p.add_argument("--limit", type=_offset, metavar="N", help="at most N events")
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
    p.add_argument("offset", type=_offset, help="the last offset the agent has handled")
    p.set_defaults(run=cmd_ack)

    p = sub.add_parser("cursors", parents=[db], help="every agent's cursor and lag")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_cursors)

    def swarm_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workspace", help="where the swarm works (the demo's default: "
                       "./sisyphus-demo)")
        p.add_argument("--speed", type=_seconds, metavar="S",
                       help="seconds between actions, so a person can watch (0: flat out; "
                       f"default {WATCH_SPEED:g}, or 0 with --headless)")
        p.add_argument("--wipe", action="append", metavar="AGENT@STEP",
                       help="wipe AGENT's context when plan step STEP (or a phase: plan, "
                       "validate, execute, gates) begins; repeatable")
        p.add_argument("--spec", metavar="FILE", help="a JSON spec (gates, bounds) instead of "
                       "the default")
        p.add_argument("--stale-after", type=_seconds, default=120.0, metavar="S",
                       help="mark an agent stale after S silent seconds with work pending")
        p.add_argument("--brain", choices=BRAIN_CHOICES, metavar="NAME",
                       help="every role thinks with this brain: scripted (the demo's "
                       "default), claude, codex, gemini, opencode or acp (over "
                       ".sisyphus/config.toml)")

    screen = _Parser(add_help=False)
    screen.add_argument("--low-bandwidth", action="store_true",
                        help="over slow SSH: cap the frame rate, no animations")
    screen.add_argument("--no-mouse", action="store_true", help="do not capture the mouse")

    p = sub.add_parser("demo", parents=[db, screen], help="run the demo in the TUI: a swarm "
                       "refactors a sample project (resumes if interrupted)")
    p.add_argument("--headless", action="store_true", help="no screen: print progress lines")
    p.add_argument("--fresh", action="store_true", help="start the demo over: remove its "
                   "database (with its -wal and -shm files) and its workspace "
                   "first, saying so (refused while another process hosts it, or for a "
                   "folder that is not the demo's)")
    swarm_options(p)
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("run", parents=[db], help="host the swarm of this database (actors run "
                       "here; steer it from any shell)")
    p.add_argument("--headless", action="store_true", help="no screen: print progress lines")
    p.add_argument("--goal", help="start a task with this goal if the database has none")
    swarm_options(p)
    p.set_defaults(run=cmd_run)

    p = sub.add_parser("agent", parents=[db], help="run one real coding agent on one prompt, "
                       "every event into the log (the same --name resumes its session)")
    p.add_argument("backend", choices=BRAIN_CHOICES[1:], metavar="BACKEND",
                   help="claude, codex, gemini, opencode, or acp (with --command)")
    p.add_argument("prompt", type=_text, help="what to ask it")
    p.add_argument("--workspace", help="where it works (default: the current folder)")
    p.add_argument("--name", help="its agent name in the log (default: the backend's)")
    p.add_argument("--model", help="the model to ask for")
    p.add_argument("--command", dest="command_line", type=shlex.split, metavar="'CMD ARGS'",
                   help="the command that starts it (acp: e.g. 'opencode acp'; else the "
                   "binary to run)")
    p.add_argument("-v", "--verbose", action="store_true", help="print its events on "
                   "stderr as they come")
    p.set_defaults(run=cmd_agent)

    p = sub.add_parser("tui", parents=[db, screen], help="attach the TUI to a database whose "
                       "swarm runs elsewhere (quitting never stops the swarm)")
    p.set_defaults(run=None)

    p = sub.add_parser("ledger", parents=[db], help="rebuild SISYPHUS_LEDGER.md from offset 0")
    p.add_argument("--out", metavar="FILE", help="write it here (atomically) instead of stdout")
    p.set_defaults(run=cmd_ledger)

    p = sub.add_parser("doctor", parents=[db], help="check the database and every event in "
                       "it; list what readers skip (exit 1 if anything)")
    p.set_defaults(run=cmd_doctor)

    p = sub.add_parser("agents", parents=[db], help="who hosts the swarm, and every agent: "
                       "role, true state (paused, blocked, no host), pending messages, last "
                       "activity, what it does")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_agents)

    p = sub.add_parser("cost", parents=[db], help="tokens and cost per agent, per role and "
                       "for the run (~: estimated from the config's price table)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(run=cmd_cost)

    actor = _Parser(add_help=False)
    actor.add_argument("--from", dest="sender", default="human", help="who asks "
                       "(default: human)")

    p = sub.add_parser("wipe", parents=[db, actor], help="wipe an agent's context (it resumes "
                       "from its checkpoint)")
    p.add_argument("agent")
    p.add_argument("--hold", action="store_true", help="stay wiped until `sisyphus resume`")
    p.set_defaults(run=cmd_wipe)

    p = sub.add_parser("resume", parents=[db, actor], help="resume a wiped or failed agent")
    p.add_argument("agent")
    p.set_defaults(run=cmd_resume)

    p = sub.add_parser("cancel", parents=[db, actor], help="stop an agent's running turn "
                       "(its agent asked to stop, then SIGINT, then SIGKILL); it waits "
                       "for `sisyphus restart`")
    p.add_argument("agent")
    p.set_defaults(run=cmd_cancel)

    p = sub.add_parser("restart", parents=[db, actor], help="do a cancelled, stalled or "
                       "failed agent's turn again, from its checkpoint")
    p.add_argument("agent")
    p.set_defaults(run=cmd_restart)

    p = sub.add_parser("answer", parents=[db, actor], help="answer an agent's permission "
                       "request (the oldest it waits on)")
    p.add_argument("agent")
    p.add_argument("decision", choices=("allow", "deny"))
    p.add_argument("--always", action="store_true", help="allow this tool for the agent "
                   "for the rest of the run")
    p.add_argument("--message", type=_text, help="what to tell the agent (with deny)")
    p.add_argument("--request", help="the request to answer (default: its oldest)")
    p.set_defaults(run=cmd_answer)

    p = sub.add_parser("pause", parents=[db, actor], help="pause the swarm (agents finish "
                       "their current message, then wait)")
    p.set_defaults(run=cmd_pause)

    p = sub.add_parser("unpause", parents=[db, actor], help="let a paused swarm run again")
    p.set_defaults(run=cmd_unpause)

    p = sub.add_parser("approve", parents=[db, actor], help="pass a human gate")
    p.add_argument("gate")
    p.set_defaults(run=cmd_approve)

    p = sub.add_parser("spawn", parents=[db], help="spawn an agent by skill; waits for its "
                       "result unless --background")
    p.add_argument("skill")
    p.add_argument("name")
    p.add_argument("prompt")
    p.add_argument("--background", action="store_true", help="say the request and return "
                   "at once; the result arrives in the human's inbox")
    p.add_argument("--thinking", choices=["off", "think", "ultrathink"])
    p.add_argument("--timeout", type=_seconds, default=300.0, metavar="S",
                   help="how long to wait for the result (default 300)")
    p.add_argument("--workspace", help="where workspace skills live (.sisyphus/skills)")
    p.set_defaults(run=cmd_spawn)

    p = sub.add_parser("checkpoints", parents=[db], help="the checkpoints that carry a "
                       "workspace commit: offset, time, agent, step, commit, how many "
                       "files differ from now")
    p.add_argument("--workspace", help="the workspace (default: the run's own, else the "
                   "current folder)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_checkpoints)

    p = sub.add_parser("restore", parents=[db], help="put the workspace back as a "
                       "checkpoint left it (says what it will change, then asks)")
    p.add_argument("offset", type=_offset, help="the checkpoint's offset (`sisyphus "
                   "checkpoints`)")
    p.add_argument("--workspace", help="the workspace (default: the run's own, else the "
                   "current folder)")
    p.add_argument("--yes", action="store_true", help="restore without asking")
    p.set_defaults(run=cmd_restore)
    return parser


async def _until_signalled(args: argparse.Namespace, received: list[int]) -> int:
    """Run the command; SIGTERM and SIGHUP end it as cleanly as Ctrl-C does (the main
    task is cancelled, so every ``finally`` runs and the database closes)."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None

    def stop(signum: int) -> None:
        received.append(signum)
        main_task.cancel()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop, signum)
    code: int = await args.run(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sisyphus`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not getattr(args, "db", None):
        args.db = default_db()
    if getattr(args, "command", None) == "demo" and not getattr(args, "workspace", None):
        args.workspace = "sisyphus-demo"
    if hasattr(args, "headless") and args.speed is None:
        args.speed = 0.0 if args.headless else WATCH_SPEED
    # Paths are made absolute here, before the event loop starts.
    args.cwd = os.getcwd()
    if getattr(args, "workspace", None):
        args.workspace = os.path.abspath(args.workspace)
    received: list[int] = []
    # An interrupted host says so in its exit code; a reader (`events --follow`) ends
    # that way by design, with 0.
    hosting = args.command in HOSTING
    try:
        if args.command == "tui" or (args.command == "demo" and not args.headless):
            return run_tui(args)
        return asyncio.run(_until_signalled(args, received))
    except SisyphusError as exc:
        print(f"sisyphus: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except asyncio.CancelledError:
        if not received:
            raise
        return 128 + received[0] if hosting else 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED if hosting else 0
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
