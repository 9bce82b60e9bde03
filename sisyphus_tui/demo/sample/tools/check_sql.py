"""Gate: fail when any module under inventory/ builds SQL by string formatting.

Flags an f-string, a ``%`` formatting or a ``.format(...)`` call on a string
literal whose text contains SELECT, INSERT, UPDATE or DELETE. Standard library
only; prints ``path:line: SQL built by string formatting`` for each and exits 1,
else prints ``ok: no SQL built by string formatting`` and exits 0.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

# The workspace root, whatever the current directory: this file is tools/check_sql.py.
ROOT = Path(__file__).resolve().parent.parent
# Whole words only, so a message such as f"last updated {when}" is not SQL.
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def literal_text(node: ast.expr) -> str | None:
    """The literal text of a string constant or an f-string's constant parts, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value
            for part in node.values
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
        )
    return None


def formatted_text(node: ast.AST) -> str | None:
    """The literal text ``node`` formats values into, if it is string formatting at all."""
    if isinstance(node, ast.JoinedStr):
        return literal_text(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return literal_text(node.left)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        return literal_text(node.func.value)
    return None


def formatted_sql_lines(source: str, filename: str = "<string>") -> list[int]:
    """Line numbers where ``source`` builds SQL by string formatting."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source, filename)):
        text = formatted_text(node)
        if text is not None and SQL_WORDS.search(text) and isinstance(node, ast.expr):
            lines.add(node.lineno)
    return sorted(lines)


def main() -> int:
    """Scan inventory/**/*.py, print the findings, and return the exit status."""
    findings = []
    for path in sorted((ROOT / "inventory").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for line in formatted_sql_lines(path.read_text(encoding="utf-8"), relative):
            findings.append(f"{relative}:{line}: SQL built by string formatting")
    if findings:
        print("\n".join(findings))
        return 1
    print("ok: no SQL built by string formatting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
