"""Subprocesses of the swarm (gates, test runs, and the coding-agent CLIs to come): each
in its own process group, its output streamed line by line as it comes, a timeout and a
cancel that end the whole group, and nothing left running after it.

A line is bounded (an agent may print a megabyte of JSON on one line): what is beyond
the bound is dropped and said, never buffered without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL_CHARS = 2000
MAX_LINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 16
EXIT_POLL_S = 0.02

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
        proc = await asyncio.create_subprocess_exec(
            *full, cwd=cwd, env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return CommandResult(full, 127, time.perf_counter() - start,
                             f"cannot run {full[0]!r}: {exc.strerror}")
    tail: deque[str] = deque()
    tail_len = 0

    async def pump() -> None:
        nonlocal tail_len
        assert proc.stdout is not None
        lines = _Lines(max_line_bytes)
        while True:
            data = await proc.stdout.read(CHUNK_BYTES)
            for line in lines.feed(data) if data else lines.close():
                tail.append(line)
                tail_len += len(line) + 1
                while tail_len - len(tail[0]) - 1 >= tail_chars:
                    tail_len -= len(tail.popleft()) + 1
                if on_line is not None:
                    result = on_line(line)
                    if inspect.isawaitable(result):
                        await result
            if not data:
                return

    reader = asyncio.create_task(pump())
    exited = asyncio.create_task(_exit_of(proc))
    try:
        # The output's end, or the command's: a child it left behind may hold the pipe.
        done, _ = await asyncio.wait({reader, exited}, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        timed_out = not done
        if timed_out:
            await _end_group(proc, grace_s)
        else:
            _kill_group(proc)  # what it left running in its group
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(reader), 5)
    except BaseException:  # cancelled: the whole group goes too
        await asyncio.shield(_end_group(proc, grace_s))
        raise
    finally:
        reader.cancel()
        _kill_group(proc)
        exited.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
    if reader.done() and not reader.cancelled() and reader.exception() is not None:
        raise reader.exception()  # type: ignore[misc]  # (on_line's own error)
    text = "\n".join(tail)
    if text and not text.endswith("\n"):
        text += "\n"
    if timed_out:
        text += f"[timed out after {timeout_s:g}s]"
    code = proc.returncode if proc.returncode is not None else -1
    return CommandResult(full, code, time.perf_counter() - start, text[-tail_chars:],
                         timed_out)


async def _exit_of(proc: asyncio.subprocess.Process) -> None:
    """Return when the process has exited, whether or not its pipes are still open (a
    child it left may hold them; asyncio's own ``wait()`` waits for the pipes too)."""
    while proc.returncode is None:  # noqa: ASYNC110  (asyncio offers no event for it)
        await asyncio.sleep(EXIT_POLL_S)


async def _end_group(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM to the group, then SIGKILL if it is still there after ``grace_s``."""
    if grace_s > 0:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace_s)
    _kill_group(proc)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)
