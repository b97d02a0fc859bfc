"""SQLite handlers of the record commands behind PyErgon's store API (storage/pyergon.py).

The records live in their own table, created with the first record: a store that never serves
PyErgon's API keeps the schema it had.
"""

from __future__ import annotations

import sqlite3

from .commands import PutRecord, ResetStore, ScanRecords

__all__ = ["SqliteRecords"]

_TABLE = "CREATE TABLE IF NOT EXISTS pyergon_records (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"


class SqliteRecords:
    """Mixed into SqliteExecutionLog: each handler runs inside the batch's transaction."""

    def _PutRecord(self, db: sqlite3.Connection, c: PutRecord, now: float) -> bool:
        db.execute(_TABLE)
        if c.check:
            row = db.execute("SELECT value FROM pyergon_records WHERE key = ?", (c.key,)).fetchone()
            if (None if row is None else bytes(row[0])) != c.expected:
                return False
        if c.value is None:
            db.execute("DELETE FROM pyergon_records WHERE key = ?", (c.key,))
        else:
            db.execute("INSERT INTO pyergon_records VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (c.key, c.value))
        return True

    def _ScanRecords(self, db: sqlite3.Connection, c: ScanRecords, now: float) -> list[list[object]]:
        db.execute(_TABLE)
        rows = db.execute("SELECT key, value FROM pyergon_records WHERE substr(key, 1, ?) = ? ORDER BY key",
                          (len(c.prefix), c.prefix))
        return [[key, bytes(value)] for key, value in rows]

    def _ResetStore(self, db: sqlite3.Connection, c: ResetStore, now: float) -> None:
        db.execute(_TABLE)
        for table in ("flows", "steps", "signals", "events", "pyergon_records", "schedules"):
            db.execute(f"DELETE FROM {table}")
