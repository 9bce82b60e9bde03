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

    def add(self, name: str, qty: int, price: float) -> Item:
        """Insert a new item and return it."""
        cur = self._conn.execute(
            "INSERT INTO items (name, qty, price) VALUES (?, ?, ?)", (name, qty, price)
        )
        self._conn.commit()
        assert cur.lastrowid is not None  # always set after a successful INSERT
        return Item(cur.lastrowid, name, qty, price)

    def below(self, qty: int) -> list[Item]:
        """Items with fewer than ``qty`` in stock, by name."""
        rows = self._conn.execute(
            "SELECT id, name, qty, price FROM items WHERE qty < ? ORDER BY name", (qty,)
        ).fetchall()
        return [Item.from_row(row) for row in rows]
