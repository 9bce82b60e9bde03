"""The stock report: how many items, what they are worth, which are running low."""

from __future__ import annotations

import sqlite3

from inventory.repository import ItemRepository


def stock_report(conn: sqlite3.Connection, threshold: int = 5) -> str:
    """The report as text; items with fewer than ``threshold`` in stock are listed as low."""
    repo = ItemRepository(conn)
    count, value = repo.totals()
    low = repo.below(threshold)
    lines = ["Stock report", f"items: {count}", f"stock value: {value:.2f}"]
    if not low:
        lines.append(f"low stock (below {threshold}): none")
    else:
        lines.append(f"low stock (below {threshold}):")
        lines += [f"  {item.name}: {item.qty}" for item in low]
    return "\n".join(lines)
