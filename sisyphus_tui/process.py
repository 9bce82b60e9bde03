"""Subprocesses of the swarm (gates, test runs and the coding-agent CLIs): each
in its own process group, its output streamed line by line as it comes, a timeout and a
cancel that end the whole group, and nothing left running after it.

A line is bounded (an agent may print a megabyte of JSON on one line): what is beyond
the bound is dropped and said, never buffered without end.

A coding agent's CLI (``die_with_parent``) runs under a watchdog of its own
(``sisyphus_tui/watchdog.py``): the subreaper of everything the agent starts, holding a
pipe from this process. When this process ends, even by SIGKILL, the pipe's end tells
the watchdog, which ends the agent and all it started, a shell tool's ``sleep`` in a
session of its own included (a process group, or a parent-death signal, reach neither).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import errno
import inspect
import json
import os
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT_TAIL_CHARS = 2000
MAX_LINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 16
EXIT_POLL_S = 0.02
WATCHDOG = Path(__file__).with_name("watchdog.py")
KILL_WAIT_S = 2.0  # how long a watchdog may take to kill its agent's tree

LineHandler = Callable[[str], Awaitable[None] | None]


@dataclass(frozen=True)
class CommandResult:
    """How a command ended."""

    argv: tuple[str, ...]
    exit_code: int
    duration_s: float
    output_tail: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Exit code 0, in time."""
        return self.exit_code == 0 and not self.timed_out


class _Lines:
    """Bytes in, whole lines out (decoded, newline dropped), each at most ``limit``
    bytes: the rest of a longer line is dropped, and the line says how much."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._part = bytearray()
        self._dropped = 0

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            room = self.limit - len(self._part)
            if len(piece) > room:
                self._dropped += len(piece) - max(room, 0)
                piece = piece[:max(room, 0)]
            self._part += piece
            if end < 0:
                return lines
            lines.append(self._take())
            start = end + 1

    def close(self) -> list[str]:
        return [self._take()] if self._part or self._dropped else []

    def _take(self) -> str:
        text = self._part.decode("utf-8", errors="replace")
        if self._dropped:
            text += f" [... {self._dropped} more bytes of this line dropped]"
        self._part.clear()
        self._dropped = 0
        return text


class Child:
    """A started command in its own process group: its stdout (and stderr) as bounded
    lines, its stdin, and the signals that end it. ``start`` makes one; ``close`` (or
    ``async with``) kills whatever is left of its group."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: tuple[str, ...],
                 max_line_bytes: int, watchdog: int | None = None) -> None:
        self.proc = proc
        self.argv = argv
        self.pid = proc.pid
        self._limit = max_line_bytes
        self._watchdog = watchdog  # our end of its watchdog's pipe (None: no watchdog)
        # The signals its group was sent while it still ran: which step of a cancel
        # it took to end it (SIGKILL last).
        self.signalled: list[int] = []

    @classmethod
    async def start(cls, argv: Sequence[str], cwd: Path, *,
                    env: Mapping[str, str] | None = None, stdin: bool = False,
                    merge_stderr: bool = True, die_with_parent: bool = False,
                    max_line_bytes: int = MAX_LINE_BYTES) -> Child:
        """Start ``argv`` (OSError if it cannot be run). With ``stdin`` the child reads
        a pipe (``write``, ``close_stdin``), else /dev/null; with ``merge_stderr`` its
        stderr joins stdout, else ``lines(stderr=True)`` reads it. With
        ``die_with_parent`` (Linux) it runs under a watchdog that ends it, and all it
        started, if this process dies first (a host killed with SIGKILL leaves no coding
        agent editing the workspace); its ``pid`` is then the watchdog's, the leader of
        the same process group."""
        command, read_end, watchdog = list(argv), None, None
        if die_with_parent and sys.platform.startswith("linux") and sys.executable:
            path = _executable(argv[0], cwd, env)  # (OSError as exec would raise it)
            read_end, watchdog = os.pipe()
            command = [sys.executable, "-I", "-S", "-B", str(WATCHDOG), str(read_end),
                       path, *argv]
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=cwd, env=dict(env) if env is not None else None,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=(read_end,) if read_end is not None else (),
                preexec_fn=_die_with_parent if die_with_parent and watchdog is None
                and _PRCTL is not None else None)
        except BaseException:
            if watchdog is not None:
                os.close(watchdog)
            raise
        finally:
            if read_end is not None:
                os.close(read_end)  # (the watchdog's alone: its end is our end's death)
        child = cls(proc, tuple(argv), max_line_bytes, watchdog)
        started = _STARTED.get()
        if started is not None:
            started[:] = [c for c in started if c.returncode is None]
            started.append(child)
        return child

    async def __aenter__(self) -> Child:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited (a negative signal number if killed)."""
        return self.proc.returncode

    async def lines(self, stderr: bool = False) -> AsyncIterator[str]:
        """Each line of stdout (or stderr) as it is printed, until the pipe closes."""
        stream = self.proc.stderr if stderr else self.proc.stdout
        if stream is None:
            return
        lines = _Lines(self._limit)
        while True:
            data = await stream.read(CHUNK_BYTES)
            for line in lines.feed(data) if data else lines.close():
                yield line
            if not data:
                return

    async def write(self, data: bytes) -> bool:
        """Write to its stdin; False if it no longer reads it."""
        pipe = self.proc.stdin
        if pipe is None or pipe.is_closing():
            return False
        try:
            pipe.write(data)
            await pipe.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def close_stdin(self) -> None:
        """End its input (a CLI that reads stdin until its end then goes on)."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    def signal(self, signum: int) -> None:
        """Signal its whole process group. SIGKILL of one under a watchdog is asked of
        the watchdog: it kills the whole tree (killing the group would kill the
        watchdog first, and leave what escaped the group running)."""
        if self.proc.returncode is None:
            self.signalled.append(signum)
        if signum == signal.SIGKILL and self._watchdog is not None:
            with contextlib.suppress(OSError):
                os.write(self._watchdog, b"k")
                return
        _signal_group(self.proc, signum)

    async def exited(self, timeout_s: float | None = None) -> bool:
        """Wait until it has exited (its pipes may still be held by what it left);
        False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(_exit_of(self.proc), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, steps: Sequence[tuple[int, float]]) -> None:
        """End it: each (signal, grace) in turn, to the whole group, until it has
        exited; SIGKILL of the group at the end whatever happened."""
        for signum, grace_s in steps:
            if self.proc.returncode is not None:
                break
            self.signal(signum)
            if await self.exited(grace_s):
                break
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL of all it runs (through its watchdog, its whole tree), then of what is
        left in its group."""
        if self.proc.returncode is None:
            self.signal(signal.SIGKILL)
            if self._watchdog is not None:
                await self.exited(KILL_WAIT_S)
        if self._watchdog is not None:
            os.close(self._watchdog)
            self._watchdog = None
        _kill_group(self.proc)

    async def close(self) -> None:
        """Kill what is left of it and reap it."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        await self.kill()
        with contextlib.suppress(Exception):
            await self.proc.wait()


async def run_process(argv: Sequence[str], cwd: Path, *, timeout_s: float,
                      env: Mapping[str, str] | None = None,
                      on_line: LineHandler | None = None,
                      grace_s: float = 0.0,
                      max_line_bytes: int = MAX_LINE_BYTES,
                      tail_chars: int = OUTPUT_TAIL_CHARS) -> CommandResult:
    """Run ``argv`` in ``cwd`` in its own process group, stdout and stderr merged;
    ``on_line`` gets each line as it is printed. On timeout or cancel the group gets
    SIGTERM, and SIGKILL ``grace_s`` later (at once with 0); when the command ends,
    whatever it left running in its group is killed."""
    start = time.perf_counter()
    full = tuple(argv)
    try:
        child = await Child.start(full, cwd, env=env, max_line_bytes=max_line_bytes)
    except OSError as exc:
        return CommandResult(full, 127, time.perf_counter() - start,
                             f"cannot run {full[0]!r}: {exc.strerror}")
    tail = Tail(tail_chars)
    ending = [(signal.SIGTERM, grace_s)] if grace_s > 0 else []

    async def pump() -> None:
        async for line in child.lines():
            tail.add(line)
            if on_line is not None:
                result = on_line(line)
                if inspect.isawaitable(result):
                    await result

    reader = asyncio.create_task(pump())
    exited = asyncio.create_task(child.exited())
    try:
        # The output's end, or the command's: a child it left behind may hold the pipe.
        done, _ = await asyncio.wait({reader, exited}, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        timed_out = not done
        if timed_out:
            await child.stop(ending)
        else:
            child.signal(signal.SIGKILL)  # what it left running in its group
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(reader), 5)
    except BaseException:  # cancelled: the whole group goes too
        await asyncio.shield(child.stop(ending))
        raise
    finally:
        reader.cancel()
        exited.cancel()
        await child.close()
    if reader.done() and not reader.cancelled() and reader.exception() is not None:
        raise reader.exception()  # type: ignore[misc]  # (on_line's own error)
    text = tail.text()
    if timed_out:
        text += f"[timed out after {timeout_s:g}s]"
    code = child.returncode if child.returncode is not None else -1
    return CommandResult(full, code, time.perf_counter() - start, text[-tail_chars:],
                         timed_out)


class Tail:
    """The last ``chars`` characters of a command's lines (whole lines kept)."""

    def __init__(self, chars: int) -> None:
        self.chars = chars
        self._lines: deque[str] = deque()
        self._len = 0

    def add(self, line: str) -> None:
        self._lines.append(line)
        self._len += len(line) + 1
        while self._len - len(self._lines[0]) - 1 >= self.chars:
            self._len -= len(self._lines.popleft()) + 1

    def text(self) -> str:
        text = "\n".join(self._lines)
        return text + "\n" if text and not text.endswith("\n") else text


def started_at(pid: int) -> str | None:
    """When process ``pid`` started (its start time in clock ticks since boot, from
    /proc): with the pid, it names one process, never a later one given the same pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def note_group(path: Path, pgid: int) -> None:
    """Record that this process runs the process group ``pgid`` (see ``end_leftover``)."""
    host = os.getpid()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pgid": pgid, "started": started_at(pgid), "host": host,
                                "host_started": started_at(host)}))


def end_leftover(path: Path) -> bool:
    """Kill the process group ``path`` recorded if the process that ran it is gone (a
    host killed with SIGKILL: what it started may outlive it, grandchildren the kernel's
    parent-death signal never reaches) and the group's leader is still the one started
    then. Returns whether it killed one; the record is removed."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    path.unlink(missing_ok=True)
    if not isinstance(record, dict):
        return False
    host, pgid = record.get("host"), record.get("pgid")
    if not isinstance(host, int) or not isinstance(pgid, int) or pgid <= 1:
        return False
    if started_at(host) is not None and started_at(host) == record.get("host_started"):
        return False  # its host still runs it
    leader = started_at(pgid)
    if leader is not None and leader != record.get("started"):
        return False  # the pid is another process's now: not ours to kill
    # The leader gone, what is left of its group keeps the pgid (a pid is not reused
    # while a group of that id lives).
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


_STARTED: contextvars.ContextVar[list[Child] | None] = contextvars.ContextVar(
    "sisyphus_children", default=None)


def watch_children() -> list[Child]:
    """From now on, in this context (a task, and the tasks it starts), every Child
    started is added to the list returned (those that have exited leave it as new ones
    come): what a supervisor cancelling that task reads to say how they ended."""
    started: list[Child] = []
    _STARTED.set(started)
    return started


def _executable(name: str, cwd: Path, env: Mapping[str, str] | None) -> str:
    """The file ``name`` runs, found as exec would (the PATH of ``env``, a path with a
    slash from ``cwd``): OSError, as exec would raise it, if there is none."""
    if "/" in name:
        path = os.path.join(cwd, name)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        return os.path.abspath(path)
    search = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which(name, path=search)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    return os.path.abspath(os.path.join(cwd, found))


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (not SIGKILL: an agent
    CLI then saves its session on the way out, so the next host can resume it)."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _exit_of(proc: asyncio.subprocess.Process) -> None:
    """Return when the process has exited, whether or not its pipes are still open (a
    child it left may hold them; asyncio's own ``wait()`` waits for the pipes too)."""
    while proc.returncode is None:  # noqa: ASYNC110  (asyncio offers no event for it)
        await asyncio.sleep(EXIT_POLL_S)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)
