"""Rich ``Text`` from untrusted strings: the one way the app puts log text on screen.

Anything from the log or from an agent (names, states, reasons, event types) is made
``Text`` here, never a markup string: ``[/]`` or ``[@click=app.quit]`` show as typed,
and control characters show as ``\\xNN`` escapes (``safe_text.printable``), so nothing
reaches the terminal but what is meant to be seen.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from sisyphus_tui.safe_text import printable


def literal(value: object, style: str | Style = "") -> Text:
    """``value`` as text shown exactly as it is: one line, never parsed as markup."""
    return Text(printable(str(value)), style=style)
