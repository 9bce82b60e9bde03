"""Faults that pass: which errors are worth retrying, and how long to wait between tries.

A lock held by another process, a full disk that frees, an I/O error: none of these
says anything about the run, and a turn is idempotent by design, so what failed is
tried again, with a backoff, and said on screen. Only errors that will not pass by
waiting (bad input, a bug) end an actor.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sisyphus_tui.errors import DatabaseUnavailable

T = TypeVar("T")

# Errors of the operating system that may pass: a full disk or quota, an I/O error,
# a resource busy for a moment.
PASSING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN,
                            errno.EBUSY, errno.ETXTBSY, errno.EMFILE, errno.ENFILE})
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 2.0


def is_passing(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault that may pass if the same thing is tried again (an
    error may say so itself: ``passing = True``, as a coding agent's overloaded model
    or dropped connection does)."""
    if isinstance(exc, DatabaseUnavailable) or getattr(exc, "passing", False) is True:
        return True
    return isinstance(exc, OSError) and exc.errno in PASSING_ERRNOS


def describe(exc: BaseException) -> str:
    """One line for a fault: its message, or its type when it has none."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, DatabaseUnavailable):
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return text or type(exc).__name__


class Backoff:
    """Exponential delays between tries: 0.1 s, 0.2 s, ... capped at 2 s."""

    def __init__(self, first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next try (and count this one)."""
        self.attempts += 1
        return float(min(self.first_s * 2 ** (self.attempts - 1), self.max_s))


async def retrying(attempt: Callable[[], Awaitable[T]],
                   on_fault: Callable[[BaseException, int, float], None]) -> T:
    """``await attempt()`` until it does not fail with a fault that passes; before each
    new try, ``on_fault(error, tries so far, delay)`` says so. Other errors propagate."""
    backoff = Backoff()
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not is_passing(exc):
                raise
            limit = getattr(exc, "max_retries", None)
            if isinstance(limit, int) and backoff.attempts >= limit:
                raise  # waited out long enough: the caller's to decide (a host stops)
            # An error may ask for a longer wait (a model's rate limit, an outage).
            delay = max(backoff.next(), float(getattr(exc, "retry_after_s", 0.0) or 0.0))
            on_fault(exc, backoff.attempts, delay)
            await asyncio.sleep(delay)
