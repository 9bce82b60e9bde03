"""The audit log: append, read back, filter by actor."""

from __future__ import annotations

from inventory.audit import AuditEntry, entries, record
from inventory.db import connect


def test_entries_come_back_in_order() -> None:
    conn = connect()
    record(conn, "ana", "add", "bolt x12")
    record(conn, "ben", "sell", "bolt x2")
    record(conn, "ana", "count")
    assert entries(conn) == [
        AuditEntry("ana", "add", "bolt x12"),
        AuditEntry("ben", "sell", "bolt x2"),
        AuditEntry("ana", "count", ""),
    ]


def test_entries_filtered_by_actor() -> None:
    conn = connect()
    record(conn, "ana", "add", "bolt x12")
    record(conn, "ben", "sell", "bolt x2")
    assert entries(conn, actor="ben") == [AuditEntry("ben", "sell", "bolt x2")]
    assert entries(conn, actor="cat") == []


def test_quotes_are_stored_not_run() -> None:
    conn = connect()
    record(conn, "O'Brien", "note", "said 'hi'; DELETE FROM audit; --")
    record(conn, "ana", "add")
    assert entries(conn, actor="O'Brien") == [
        AuditEntry("O'Brien", "note", "said 'hi'; DELETE FROM audit; --")
    ]
    assert entries(conn, actor="x' OR '1'='1") == []
    assert len(entries(conn)) == 2
