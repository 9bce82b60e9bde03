"""The stock report's text."""

from __future__ import annotations

from inventory.db import connect
from inventory.items import add_item
from inventory.report import stock_report


def test_report_counts_values_and_lists_low_stock() -> None:
    conn = connect()
    add_item(conn, "bolt", 12, 0.25)
    add_item(conn, "washer", 2, 0.05)
    add_item(conn, "nut", 4, 0.10)
    assert stock_report(conn) == "\n".join(
        [
            "Stock report",
            "items: 3",
            "stock value: 3.50",
            "low stock (below 5):",
            "  nut: 4",
            "  washer: 2",
        ]
    )


def test_report_with_nothing_low() -> None:
    conn = connect()
    add_item(conn, "bolt", 12, 0.25)
    assert stock_report(conn, threshold=3).splitlines()[-1] == "low stock (below 3): none"


def test_report_on_an_empty_inventory() -> None:
    assert stock_report(connect()).splitlines()[1:3] == ["items: 0", "stock value: 0.00"]


def test_report_lists_names_with_quotes() -> None:
    conn = connect()
    add_item(conn, "O'Brien's \"best\" nut", 3, 0.10)
    assert stock_report(conn).splitlines()[-1] == "  O'Brien's \"best\" nut: 3"
