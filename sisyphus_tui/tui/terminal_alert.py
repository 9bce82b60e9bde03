"""Calling the user back to the terminal: the bell, and a desktop notification (OSC 9,
or OSC 777 ``notify``) where the terminal is known to show one.

OSC 9 (``ESC ] 9 ; text BEL``) began as iTerm2's notification; kitty, WezTerm, Ghostty
and foot show it too. Other terminals differ: VTE-based ones (GNOME Terminal) swallow
it, but ConEmu and Windows Terminal read ``9;N;...`` as their own commands (progress,
...), and a multiplexer in between (tmux, screen) passes it on, drops it or shows it as
text depending on its version and settings. So it is sent only where the environment
names one of the terminals that show it, and never through a multiplexer; the bell is
the fallback everywhere.

OSC 777 (``ESC ] 777 ; notify ; title ; body BEL``) is rxvt-unicode's notification,
which VTE-based terminals (GNOME Terminal, Tilix: ``VTE_VERSION``) show too: it is sent
there, where OSC 9 is not. A terminal that shows both (foot, Ghostty, WezTerm) gets OSC 9
alone, so one request is one notification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sisyphus_tui.safe_text import printable

BELL = "\a"
OSC9_TERM_PROGRAMS = frozenset({"iTerm.app", "WezTerm", "ghostty"})
OSC9_TERMS = frozenset({"xterm-kitty", "xterm-ghostty", "wezterm", "foot", "foot-extra"})
OSC777_TERMS = ("rxvt-unicode",)  # TERM prefixes (rxvt-unicode-256color too)
MAX_TEXT = 200
_NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f]")  # what printable() left would end it


def osc9_supported(env: Mapping[str, str]) -> bool:
    """Whether the terminal the environment describes shows OSC 9 notifications."""
    if env.get("TMUX") or env.get("STY"):
        return False
    return (env.get("TERM_PROGRAM", "") in OSC9_TERM_PROGRAMS
            or env.get("TERM", "") in OSC9_TERMS or bool(env.get("KITTY_WINDOW_ID")))


def osc777_supported(env: Mapping[str, str]) -> bool:
    """Whether the terminal shows OSC 777 notifications and not OSC 9 (which is sent
    instead where both are shown)."""
    if env.get("TMUX") or env.get("STY") or osc9_supported(env):
        return False
    return bool(env.get("VTE_VERSION")) or env.get("TERM", "").startswith(OSC777_TERMS)


def _body(text: str) -> str:
    """Printable, with nothing a terminal would read as the sequence's end, bounded."""
    return _NOT_TEXT.sub("", printable(text))[:MAX_TEXT]


def osc777(text: str) -> str:
    """The OSC 777 notification titled ``sisyphus`` saying ``text`` (printable, its
    ``;`` kept: the body is the last field, so nothing in it starts another)."""
    return f"\x1b]777;notify;sisyphus;{_body(text)}\x07"


def osc9(text: str) -> str:
    """The OSC 9 sequence showing ``text``: printable (every control character, ESC and
    BEL included, made a visible escape), never beginning with a digit (``9;4;...``
    is ConEmu's progress bar in the terminals that read both), bounded."""
    return f"\x1b]9;{_body(f'sisyphus: {text}')}\x07"


def alert(text: str, env: Mapping[str, str]) -> str:
    """What to write to the terminal to call the user back: the bell, and an OSC 9
    notification saying ``text`` where the terminal shows one (OSC 9, else OSC 777)."""
    if osc9_supported(env):
        return BELL + osc9(text)
    return BELL + (osc777(text) if osc777_supported(env) else "")
