"""Text from agents made safe to print: control characters become visible escapes.

Agent output may hold ANSI/OSC escape sequences; printed raw they would drive the
terminal (move the cursor, change the title, hide text). Every C0 and C1 control
character and DEL is shown as ``\\xNN`` instead; tabs and newlines too, so one
event stays on one line.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    """``text`` with every control character replaced by a visible ``\\xNN`` escape."""
    return _CONTROL.sub(_escape, text)
