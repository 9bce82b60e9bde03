"""Gate: every .py file under inventory/, tests/ and tools/ compiles.

Uses ``compile()`` in memory, so unlike ``python -m compileall`` it writes no
``__pycache__``. Prints ``path:line: message`` for each failure and exits 1,
else prints ``ok: N files compile`` and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The workspace root, whatever the current directory: this file is tools/check_compile.py.
ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("inventory", "tests", "tools")


def main() -> int:
    """Compile every file, print the failures, and return the exit status."""
    checked = 0
    failures = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            checked += 1
            try:
                compile(path.read_bytes(), relative, "exec", dont_inherit=True)
            except SyntaxError as error:
                failures.append(f"{relative}:{error.lineno}: {error.msg}")
            except ValueError as error:  # e.g. source with a NUL byte
                failures.append(f"{relative}:0: {error}")
    if failures:
        print("\n".join(failures))
        return 1
    print(f"ok: {checked} files compile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
