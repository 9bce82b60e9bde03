"""Text from the log made safe to print: characters that would act instead of show
become visible escapes.

Agent output may hold ANSI/OSC escape sequences; printed raw they would drive the
terminal (move the cursor, change the title, hide text). Every C0 and C1 control
character and DEL is shown as ``\\xNN`` instead; tabs and newlines too, so one
event stays on one line. Lone surrogates (JSON can carry them; no encoder can write
them), the Unicode line and paragraph separators and the bidirectional controls
(which reorder what is shown) are shown as ``\\uNNNN``.

This is the one escaping rule for every output: the screen, stdout, stderr and the
files sisyphus writes. It is idempotent: escaping escaped text changes nothing.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional controls
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character replaced by a visible ``\\xNN`` escape
    (``\\uNNNN`` for the few unsafe characters above U+00FF)."""
    return _UNSAFE.sub(_escape, text)


def printable_lines(text: str) -> str:
    """Like ``printable``, but newlines stay newlines: for multi-line views (a payload,
    a reply) where a line break is shown as one."""
    return "\n".join(printable(line) for line in text.split("\n"))
