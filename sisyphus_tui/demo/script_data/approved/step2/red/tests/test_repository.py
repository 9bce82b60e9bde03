"""ItemRepository: every item query takes its values as parameters."""

from __future__ import annotations

import sqlite3

from inventory.db import connect
from inventory.items import add_item, find_item
from inventory.models import Item
from inventory.repository import ItemRepository

HOSTILE = "x' OR '1'='1"
QUOTED = "O'Brien's \"best\" nut"


def seed(conn: sqlite3.Connection, name: str, qty: int, price: float) -> None:
    """Insert a row directly, parameterised, without going through the code under test."""
    conn.execute("INSERT INTO items (name, qty, price) VALUES (?, ?, ?)", (name, qty, price))


def test_find_is_parameterised() -> None:
    conn = connect()
    seed(conn, "bolt", 12, 0.25)
    seed(conn, QUOTED, 7, 0.10)
    repo = ItemRepository(conn)
    assert repo.find("bolt") == Item(1, "bolt", 12, 0.25)
    assert repo.find(QUOTED) == Item(2, QUOTED, 7, 0.10)
    # The injection that used to match every row now matches no name at all.
    assert repo.find(HOSTILE) is None
    assert find_item(conn, HOSTILE) is None
    assert find_item(conn, QUOTED) == Item(2, QUOTED, 7, 0.10)


def test_add_round_trips_quotes() -> None:
    conn = connect()
    repo = ItemRepository(conn)
    added = repo.add(QUOTED, 7, 0.10)
    assert added == Item(added.id, QUOTED, 7, 0.10)
    assert repo.find(QUOTED) == added
    # Stored as a name, not run as a second statement.
    drop = "bolt'); DROP TABLE items; --"
    assert add_item(conn, drop, 1, 1.0) == repo.find(drop)
    assert find_item(conn, QUOTED) == added
