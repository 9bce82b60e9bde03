"""Items: add, find and list the ones running low."""

from __future__ import annotations

from inventory.db import connect
from inventory.items import add_item, find_item, items_below
from inventory.models import Item


def test_add_then_find() -> None:
    conn = connect()
    added = add_item(conn, "bolt", 12, 0.25)
    assert added == Item(added.id, "bolt", 12, 0.25)
    assert find_item(conn, "bolt") == added


def test_find_a_missing_item_is_none() -> None:
    conn = connect()
    add_item(conn, "bolt", 12, 0.25)
    assert find_item(conn, "washer") is None


def test_items_below_lists_the_low_ones_by_name() -> None:
    conn = connect()
    add_item(conn, "washer", 2, 0.05)
    add_item(conn, "bolt", 12, 0.25)
    add_item(conn, "nut", 4, 0.10)
    add_item(conn, "hinge", 5, 1.50)
    assert [item.name for item in items_below(conn, 5)] == ["nut", "washer"]
    assert items_below(conn, 1) == []
