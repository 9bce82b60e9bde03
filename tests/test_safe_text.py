"""safe_text.printable: the one escaping rule for every output."""

from __future__ import annotations

import unicodedata

from sisyphus_tui.safe_text import printable, printable_lines


def test_every_character_that_acts_on_a_terminal_is_shown_as_an_escape() -> None:
    assert printable("\x1b]2;t\x07\x9b31m\x00\x7f\t\n\r") == (
        r"\x1b]2;t\x07\x9b31m\x00\x7f\x09\x0a\x0d")
    # A lone surrogate (JSON carries them; no encoder writes them), the line and
    # paragraph separators, the bidirectional controls that reorder what is shown.
    assert printable("a\ud800b\u2028\u2029\u202e\u2066\u200f") == (
        r"a\ud800b\u2028\u2029\u202e\u2066\u200f")
    out = printable("".join(map(chr, range(0x110000))))
    out.encode("utf-8")  # nothing left that cannot be written
    assert not {unicodedata.category(ch) for ch in out} & {"Cc", "Cs", "Zl", "Zp"}


def test_text_and_markup_are_kept_and_escaping_twice_changes_nothing() -> None:
    text = "[bold]é 日本 [/] \\x1b"
    assert printable(text) == text
    once = printable("\x1b\ud800")
    assert printable(once) == once


def test_printable_lines_keeps_the_line_breaks_only() -> None:
    assert printable_lines("a\x1b\nb\\x0a\r") == "a\\x1b\nb\\x0a\\x0d"
