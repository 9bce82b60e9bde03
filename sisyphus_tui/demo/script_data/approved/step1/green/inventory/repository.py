"""ItemRepository: all the SQL about items, values always passed as parameters."""

from __future__ import annotations

import sqlite3

from inventory.models import Item


class ItemRepository:
    """Reads and writes items; the only module that speaks SQL to the items table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def find(self, name: str) -> Item | None:
        """The item called ``name``, or None."""
        row = self._conn.execute(
            "SELECT id, name, qty, price FROM items WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else Item.from_row(row)
