"""The SQLite store's schema: its version, the tables of a new file, and the migrations that
bring a file written by an earlier version up to date."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from ..errors import SchemaVersionError, StoreError

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "open_schema"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
APPLICATION_ID = 0x45524731  # "ERG1": marks a file as ours before we touch its tables

# The first schema. Every later change is a migration in _MIGRATIONS, applied to new files too,
# so a new file and an upgraded one are the same.
_SCHEMA_V1 = f"""
CREATE TABLE ergon_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE flows (
    flow_id TEXT PRIMARY KEY, flow_type TEXT NOT NULL, args BLOB NOT NULL, status TEXT NOT NULL,
    version TEXT, attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, owner TEXT,
    lease_expires REAL, ready_at REAL, result BLOB, error BLOB, parent_id TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, waiting_on TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, claim_request TEXT);
CREATE INDEX flows_ready ON flows (status, flow_type, ready_at);
CREATE INDEX flows_lease ON flows (status, flow_type, lease_expires);
CREATE INDEX flows_owner ON flows (owner) WHERE owner IS NOT NULL;
CREATE INDEX flows_parent ON flows (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX flows_waiting ON flows (waiting_on) WHERE waiting_on IS NOT NULL;
CREATE TABLE signals (name TEXT PRIMARY KEY, payload BLOB NOT NULL, created_at REAL NOT NULL,
    consumer TEXT);
CREATE TABLE steps (
    flow_id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
    args_hash INTEGER NOT NULL, status TEXT NOT NULL, result BLOB, error BLOB,
    attempt INTEGER NOT NULL, completed_at REAL NOT NULL, tries INTEGER NOT NULL, retry_at REAL,
    PRIMARY KEY (flow_id, position)) WITHOUT ROWID;
INSERT INTO ergon_meta VALUES ('schema_version', '1');
PRAGMA application_id = {APPLICATION_ID};
"""
# schema version -> the statements that bring a file of that version to the next one
_MIGRATIONS = {
    # 2: a flow's crashes (storage.records), whether it is a suspect (runs alone next) and whether
    # it is quarantined; the partial indexes keep both cheap to find while they are few.
    1: """
ALTER TABLE flows ADD COLUMN crashes BLOB;
ALTER TABLE flows ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
CREATE INDEX flows_suspect ON flows (flow_type) WHERE suspect = 1;
CREATE INDEX flows_quarantined ON flows (quarantined) WHERE quarantined = 1;
""",
    # 3: each flow's event history (storage.events), numbered per flow from 1; flows by creation
    # time, for listing a page of them (the rowid orders flows created at the same time).
    2: """
CREATE TABLE events (flow_id TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (flow_id, seq)) WITHOUT ROWID;
CREATE INDEX flows_created ON flows (created_at);
CREATE INDEX flows_status_created ON flows (status, created_at);
""",
    # 4: a suspect's mark is its group size (storage.crashes.group), no longer only 1
    3: """
DROP INDEX flows_suspect;
CREATE INDEX flows_suspect ON flows (flow_type) WHERE suspect > 0;
""",
    # 5: named queues (storage/sqlite_queues.py). The default queue's flows (queue NULL) keep
    # their claim indexes, now partial, so a claim of them never walks flows of named queues;
    # those have indexes of their own, by priority and due time. queues: every named queue and
    # its limits (NULL: none); queue_starts: claims of rate-limited queues in their last period.
    4: """
ALTER TABLE flows ADD COLUMN queue TEXT;
ALTER TABLE flows ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN queue_key TEXT;
ALTER TABLE flows ADD COLUMN dedup_id TEXT;
DROP INDEX flows_ready;
DROP INDEX flows_lease;
CREATE INDEX flows_ready ON flows (status, flow_type, ready_at) WHERE queue IS NULL;
CREATE INDEX flows_lease ON flows (status, flow_type, lease_expires) WHERE queue IS NULL;
CREATE INDEX flows_queued ON flows (queue, flow_type, status, priority DESC, ready_at) WHERE queue IS NOT NULL;
CREATE INDEX flows_queue_due ON flows (queue, status, ready_at) WHERE queue IS NOT NULL;
CREATE INDEX flows_queue_lease ON flows (queue, status, lease_expires) WHERE queue IS NOT NULL;
CREATE INDEX flows_dedup ON flows (dedup_id) WHERE dedup_id IS NOT NULL;
CREATE TABLE queues (name TEXT PRIMARY KEY, concurrency INTEGER, worker_concurrency INTEGER,
    key_concurrency INTEGER, rate_limit INTEGER, rate_period REAL) WITHOUT ROWID;
CREATE TABLE queue_starts (queue TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX queue_starts_at ON queue_starts (queue, at);
""",
    # 6: cron schedules (storage.schedules); the flows of each status counted by triggers, so a
    # count never scans the flows; space freed by prune given back to the file system
    # (auto_vacuum, switched on by _incremental_vacuum once this step ran).
    5: """
CREATE TABLE schedules (name TEXT PRIMARY KEY, cron TEXT NOT NULL, flow_type TEXT NOT NULL, args BLOB NOT NULL,
    missed TEXT NOT NULL, paused INTEGER NOT NULL, last_tick REAL NOT NULL, revision INTEGER NOT NULL,
    created_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE flow_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO flow_counts VALUES ('PENDING', 0), ('RUNNING', 0), ('SUSPENDED', 0), ('COMPLETE', 0), ('FAILED', 0),
    ('CANCELLED', 0);
UPDATE flow_counts SET n = (SELECT count(*) FROM flows WHERE flows.status = flow_counts.status);
CREATE TRIGGER flows_count_insert AFTER INSERT ON flows BEGIN
    UPDATE flow_counts SET n = n + 1 WHERE status = new.status; END;
CREATE TRIGGER flows_count_delete AFTER DELETE ON flows BEGIN
    UPDATE flow_counts SET n = n - 1 WHERE status = old.status; END;
CREATE TRIGGER flows_count_update AFTER UPDATE OF status ON flows WHEN old.status != new.status BEGIN
    UPDATE flow_counts SET n = n - 1 WHERE status = old.status;
    UPDATE flow_counts SET n = n + 1 WHERE status = new.status; END;
INSERT INTO ergon_meta VALUES ('auto_vacuum', 'wanted') ON CONFLICT (key) DO NOTHING;
""",
}


def open_schema(db: sqlite3.Connection, path: str) -> None:
    """Check the file is ours, create its tables if it is new, bring it to SCHEMA_VERSION, and
    put it in WAL mode.

    Raises:
        StoreError: a SQLite file of another application.
        SchemaVersionError: written by a newer version of ergon_actors (the file is left as it is).
    """
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("BEGIN")  # both reads from one snapshot: another process may be creating the file
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = _tables(db)
    finally:
        db.execute("COMMIT")
    if not tables and app_id == 0:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect only before the first table
        _wal(db)
        # Another process opening the same new file may create the tables first: look again
        # under the write lock.
        _in_transaction(db, lambda: "" if _tables(db) else _SCHEMA_V1)
    elif app_id != APPLICATION_ID or "ergon_meta" not in tables:
        raise StoreError(f"{path!r} is a SQLite file of another application "
                         f"(tables: {', '.join(sorted(tables)) or 'none'}); refusing to touch it")
    found = _schema_version(db)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path!r} has schema version {found}; this ergon_actors supports up to "
            f"{SCHEMA_VERSION}: upgrade ergon_actors", found=found, supported=SCHEMA_VERSION)
    _wal(db)
    if found < SCHEMA_VERSION:
        _in_transaction(db, lambda: _migrations(db))
    _incremental_vacuum(db, path)


def _schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM ergon_meta WHERE key = 'schema_version'").fetchone()[0])


def _wal(db: sqlite3.Connection, timeout: float = 10.0) -> None:
    """Put the file in WAL mode. SQLite answers a mode change that meets another connection's lock
    with SQLITE_BUSY at once, without its busy handler: wait here as busy_timeout would."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _incremental_vacuum(db: sqlite3.Connection, path: str) -> None:
    """Switch a file written before auto_vacuum was on to INCREMENTAL, so that pruning can give
    space back. SQLite applies the switch to a file with tables only by rewriting it whole
    (VACUUM), which needs the file to itself: tried once per open, without waiting, until it
    worked (a new file has the mode from the start)."""
    row = db.execute("SELECT value FROM ergon_meta WHERE key = 'auto_vacuum'").fetchone()
    if row is None or row[0] != "wanted":
        return
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            log.info("%s: auto_vacuum not switched on yet (%s); tried again when next opened", path, exc)
            return
        finally:
            db.execute("PRAGMA busy_timeout = 10000")
        log.info("%s: rewritten once (VACUUM) with auto_vacuum = INCREMENTAL", path)
    _in_transaction(db, lambda: "UPDATE ergon_meta SET value = 'on' WHERE key = 'auto_vacuum'")


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _migrations(db: sqlite3.Connection) -> str:
    """The statements that bring the file to SCHEMA_VERSION (read under the write lock, so two
    processes never migrate one file twice)."""
    found = _schema_version(db)
    script = "".join(_MIGRATIONS[v] + ";" for v in range(found, SCHEMA_VERSION))
    return script + f"UPDATE ergon_meta SET value = '{max(found, SCHEMA_VERSION)}' WHERE key = 'schema_version'"


def _statements(script: str) -> list[str]:
    """The statements of a script, each whole (a trigger's body holds semicolons of its own)."""
    statements, current = [], ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current)
            current = ""
    return statements + ([current] if current.strip(" \n;") else [])


def _in_transaction(db: sqlite3.Connection, script: Callable[[], str]) -> None:
    """Run the statements `script()` returns, in one transaction: it is called under the write lock."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(script()):
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
