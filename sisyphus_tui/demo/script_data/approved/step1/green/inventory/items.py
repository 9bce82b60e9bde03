"""Stock items: add them, find them, list the ones running low."""

from __future__ import annotations

import sqlite3

from inventory.models import Item
from inventory.repository import ItemRepository

COLUMNS = "id, name, qty, price"


def add_item(conn: sqlite3.Connection, name: str, qty: int, price: float) -> Item:
    """Insert a new item and return it."""
    cur = conn.execute(f"INSERT INTO items (name, qty, price) VALUES ('{name}', {qty}, {price})")
    conn.commit()
    assert cur.lastrowid is not None  # always set after a successful INSERT
    return Item(cur.lastrowid, name, qty, price)


def find_item(conn: sqlite3.Connection, name: str) -> Item | None:
    """The item called ``name``, or None."""
    return ItemRepository(conn).find(name)


def items_below(conn: sqlite3.Connection, qty: int) -> list[Item]:
    """Items with fewer than ``qty`` in stock, by name."""
    rows = conn.execute(
        "SELECT {} FROM items WHERE qty < {} ORDER BY name".format(COLUMNS, qty)  # noqa: UP032
    ).fetchall()
    return [Item.from_row(row) for row in rows]
