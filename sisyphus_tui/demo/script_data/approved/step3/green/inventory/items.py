"""Stock items: add them, find them, list the ones running low.

The SQL lives in ItemRepository; these functions keep the original public API.
"""

from __future__ import annotations

import sqlite3

from inventory.models import Item
from inventory.repository import ItemRepository


def add_item(conn: sqlite3.Connection, name: str, qty: int, price: float) -> Item:
    """Insert a new item and return it."""
    return ItemRepository(conn).add(name, qty, price)


def find_item(conn: sqlite3.Connection, name: str) -> Item | None:
    """The item called ``name``, or None."""
    return ItemRepository(conn).find(name)


def items_below(conn: sqlite3.Connection, qty: int) -> list[Item]:
    """Items with fewer than ``qty`` in stock, by name."""
    return ItemRepository(conn).below(qty)
