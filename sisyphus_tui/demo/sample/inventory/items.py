"""Stock items: add them, find them, list the ones running low."""

from __future__ import annotations

import sqlite3

from inventory.models import Item

COLUMNS = "id, name, qty, price"


def add_item(conn: sqlite3.Connection, name: str, qty: int, price: float) -> Item:
    """Insert a new item and return it."""
    cur = conn.execute(f"INSERT INTO items (name, qty, price) VALUES ('{name}', {qty}, {price})")
    conn.commit()
    assert cur.lastrowid is not None  # always set after a successful INSERT
    return Item(cur.lastrowid, name, qty, price)


def find_item(conn: sqlite3.Connection, name: str) -> Item | None:
    """The item called ``name``, or None."""
    row = conn.execute(
        "SELECT %s FROM items WHERE name = '%s'" % (COLUMNS, name)  # noqa: UP031
    ).fetchone()
    return None if row is None else Item.from_row(row)


def items_below(conn: sqlite3.Connection, qty: int) -> list[Item]:
    """Items with fewer than ``qty`` in stock, by name."""
    rows = conn.execute(
        "SELECT {} FROM items WHERE qty < {} ORDER BY name".format(COLUMNS, qty)  # noqa: UP032
    ).fetchall()
    return [Item.from_row(row) for row in rows]
