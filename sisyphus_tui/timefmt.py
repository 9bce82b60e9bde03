"""An event's time stamp as people read it, in every output: never raises.

A time stamp comes from the log, which another program, an older version or bit rot
may have written: ``1e20``, ``-1e300`` or ``nan`` must show as unknown, not crash the
screen, ``sisyphus events`` or the ledger (``time.localtime`` raises OverflowError,
OSError or ValueError for them).
"""

from __future__ import annotations

import math
import time
from datetime import datetime

UNKNOWN_CLOCK = "??:??:??"
UNKNOWN = "an unknown time"
_BAD = (OverflowError, OSError, ValueError, TypeError)


def clock(ts: float, *, millis: bool = False) -> str:
    """The local time of day, ``12:34:06`` (``12:34:06.123`` with ``millis``)."""
    try:
        out = time.strftime("%H:%M:%S", time.localtime(ts))
        return out + f".{int(ts * 1000) % 1000:03d}" if millis else out
    except _BAD:
        return UNKNOWN_CLOCK + (".???" if millis else "")


def local_time(ts: float) -> str:
    """The local date and time with its UTC offset: ``2026-12-01 19:42:34.123 +0000``."""
    try:
        if not math.isfinite(ts):
            raise ValueError(ts)
        when = datetime.fromtimestamp(ts).astimezone()
        return (when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
                + when.strftime(" %z"))
    except _BAD:
        return f"{UNKNOWN} ({ts!r})"


def utc(ts: float) -> str:
    """The date and time in UTC, ``2026-12-01 19:42:34Z`` (the ledger's: the same on
    every machine, so a rebuild is byte-identical)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"
    except _BAD:
        return "?"
