"""The audit log: who did what, in the order they did it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    actor: str
    action: str
    detail: str


def record(conn: sqlite3.Connection, actor: str, action: str, detail: str = "") -> None:
    """Append an entry to the audit log."""
    conn.execute(
        "INSERT INTO audit (actor, action, detail) VALUES ('%s', '%s', '%s')"  # noqa: UP031
        % (actor, action, detail)
    )
    conn.commit()


def entries(conn: sqlite3.Connection, actor: str | None = None) -> list[AuditEntry]:
    """The log, oldest first; only ``actor``'s entries when one is given."""
    if actor is None:
        rows = conn.execute("SELECT actor, action, detail FROM audit ORDER BY id").fetchall()
    else:
        rows = conn.execute(
            "SELECT actor, action, detail FROM audit WHERE actor = '%s' ORDER BY id" % actor  # noqa: UP031
        ).fetchall()
    return [AuditEntry(row["actor"], row["action"], row["detail"]) for row in rows]
