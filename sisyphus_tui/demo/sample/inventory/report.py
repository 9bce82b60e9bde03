"""The stock report: how many items, what they are worth, which are running low."""

from __future__ import annotations

import sqlite3

TABLE = "items"


def stock_report(conn: sqlite3.Connection, threshold: int = 5) -> str:
    """The report as text; items with fewer than ``threshold`` in stock are listed as low."""
    count, value = conn.execute(
        f"SELECT COUNT(*), COALESCE(SUM(qty * price), 0) FROM {TABLE}"
    ).fetchone()
    low = conn.execute(
        f"SELECT name, qty FROM {TABLE} WHERE qty < {threshold} ORDER BY name"
    ).fetchall()
    lines = ["Stock report", f"items: {count}", f"stock value: {value:.2f}"]
    if not low:
        lines.append(f"low stock (below {threshold}): none")
    else:
        lines.append(f"low stock (below {threshold}):")
        lines += [f"  {row['name']}: {row['qty']}" for row in low]
    return "\n".join(lines)
