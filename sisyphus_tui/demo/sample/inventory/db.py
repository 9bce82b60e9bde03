"""The connection and the schema."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id    INTEGER PRIMARY KEY,
    name  TEXT    NOT NULL UNIQUE,
    qty   INTEGER NOT NULL,
    price REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id     INTEGER PRIMARY KEY,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


def connect(path: str = ":memory:") -> sqlite3.Connection:
    """Open the database at ``path`` (in memory by default) with the schema in place."""
    conn = sqlite3.connect(path)
    # Rows by column name, so callers never depend on the SELECT's column order.
    conn.row_factory = sqlite3.Row
    conn.executescript(SCHEMA)
    return conn
