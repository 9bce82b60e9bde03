"""The records the app hands out."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One stock item."""

    id: int
    name: str
    qty: int
    price: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Item:
        """Build an item from a row of the ``items`` table."""
        return cls(row["id"], row["name"], row["qty"], row["price"])
