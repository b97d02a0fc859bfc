"""SQLite handlers of the operators' commands: a flow's history, pages of flows, retry, fork, migrate.

Mixed into SqliteExecutionLog; each handler runs inside the batch's transaction.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from ..errors import DecodeError, FlowNotFoundError
from .commands import FlowPage, ForkFlow, LoadHistory, MigrateFlows, QueryFlows, RetryFlow, Scheduled, ScheduleFlow
from .events import Event, FlowEvent
from .records import load_failure
from .rules import check_migration, migrated_event, retried
from .sqlite_rows import FLOW_COLUMNS, STEP_COLUMNS, flow_row

if TYPE_CHECKING:
    from ..core import FlowRecord

__all__ = ["SqliteOperations", "error_type"]


def error_type(data: bytes | None) -> str | None:
    """SQL function ergon_error_type(error): the type of a stored Failure ("module:Class")."""
    try:
        return None if data is None else load_failure(data).type
    except DecodeError:
        return None


def _query(c: QueryFlows) -> tuple[str, dict[str, object]]:
    """SQL and parameters for one page of a QueryFlows (one row more than the page: is there more?).

    With statuses, one branch per status walks the (status, created_at) index in order and stops
    at the page's size, so the first page is cheap however many flows the store holds.
    """
    order = "DESC" if c.newest_first else "ASC"
    params: dict[str, object] = {"n": max(c.limit, 0) + 1}
    where = []
    for i, name in enumerate(c.flow_types or ()):
        params[f"t{i}"] = name
    if c.flow_types is not None:
        where.append(f"flow_type IN ({', '.join(f':t{i}' for i in range(len(c.flow_types))) or 'NULL'})")
    for name, op, value in (("after", ">=", c.created_after), ("before", "<", c.created_before)):
        if value is not None:
            params[name] = value
            where.append(f"created_at {op} :{name}")
    if c.id_contains is not None:
        params["id"] = c.id_contains
        where.append("instr(flow_id, :id) > 0")
    if c.error_contains is not None:
        params["error"] = c.error_contains
        where.append("instr(ergon_error_type(error), :error) > 0")
    if c.cursor is not None:
        at, _, rowid = c.cursor.partition(":")
        params.update(at=float(at), rowid=int(rowid))
        where.append(f"(created_at, rowid) {'<' if c.newest_first else '>'} (:at, :rowid)")
    select = f"SELECT {FLOW_COLUMNS}, rowid AS r FROM flows WHERE "
    tail = f"ORDER BY created_at {order}, r {order} LIMIT :n"
    if c.statuses is None:
        return select + " AND ".join(where or ["1"]) + " " + tail, params
    branches = []
    for i, status in enumerate(c.statuses):
        params[f"s{i}"] = str(status)
        branches.append(f"SELECT * FROM ({select}{' AND '.join([f'status = :s{i}', *where])} {tail})")
    return " UNION ALL ".join(branches or [select + "0"]) + " " + tail, params


class SqliteOperations:
    """The operators' commands; the store provides _get, _event and _ScheduleFlow."""

    if TYPE_CHECKING:
        def _get(self, db: sqlite3.Connection, flow_id: str) -> FlowRecord | None: ...
        def _event(self, db: sqlite3.Connection, flow_id: str, now: float, event: Event) -> None: ...
        def _ScheduleFlow(self, db: sqlite3.Connection, c: ScheduleFlow, now: float) -> Scheduled: ...


    def _LoadHistory(self, db: sqlite3.Connection, c: LoadHistory, now: float) -> list[FlowEvent]:
        rows = db.execute("SELECT seq, at, kind, data FROM events WHERE flow_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                          (c.flow_id, c.after, c.limit))
        return [FlowEvent(*r) for r in rows]

    def _QueryFlows(self, db: sqlite3.Connection, c: QueryFlows, now: float) -> FlowPage:
        sql, params = _query(c)
        rows = db.execute(sql, params).fetchall()
        page = rows[:max(c.limit, 0)]
        cursor = f"{page[-1][13]!r}:{page[-1][-1]}" if len(rows) > len(page) and page else None
        return FlowPage(tuple(flow_row(r[:-1]) for r in page), cursor)

    def _RetryFlow(self, db: sqlite3.Connection, c: RetryFlow, now: float) -> None:
        flow = self._get(db, c.flow_id)
        if flow is None:
            raise FlowNotFoundError(c.flow_id)
        again = retried(flow, now)
        db.execute("UPDATE flows SET status = 'PENDING', attempt = ?, ready_at = ?, owner = NULL, "
                   "lease_expires = NULL, result = NULL, waiting_on = NULL, cancel_requested = 0, suspect = 0, "
                   "quarantined = 0, updated_at = ? WHERE flow_id = ?",
                   (again.attempt, now, now, c.flow_id))
        self._event(db, c.flow_id, now, ("retried", {"attempt": again.attempt}))
        for (child_id,) in db.execute("SELECT flow_id FROM flows WHERE parent_id = ? AND status IN ('FAILED', "
                                      "'CANCELLED')", (c.flow_id,)).fetchall():
            self._RetryFlow(db, RetryFlow(child_id), now)

    def _ForkFlow(self, db: sqlite3.Connection, c: ForkFlow, now: float) -> Scheduled:
        flow = self._get(db, c.flow_id)
        if flow is None:
            raise FlowNotFoundError(c.flow_id)
        copy = ScheduleFlow(c.new_flow_id, flow.flow_type, flow.args, flow.version)
        if not self._ScheduleFlow(db, copy, now).created:
            return Scheduled(c.new_flow_id, False)
        # epoch 1: its first claim (epoch 2) is a resumption, with steps to replay
        db.execute("UPDATE flows SET epoch = 1 WHERE flow_id = ?", (c.new_flow_id,))
        db.execute(f"INSERT INTO steps SELECT ?, {STEP_COLUMNS} FROM steps WHERE flow_id = ? AND position < ? "
                   "AND status = 'COMPLETE'", (c.new_flow_id, c.flow_id, c.from_position))
        self._event(db, c.flow_id, now, ("forked", {"into": c.new_flow_id, "from_step": c.from_position}))
        self._event(db, c.new_flow_id, now, ("forked", {"from": c.flow_id, "from_step": c.from_position}))
        return Scheduled(c.new_flow_id, True)

    def _MigrateFlows(self, db: sqlite3.Connection, c: MigrateFlows, now: float) -> int:
        check_migration(c)
        where, params = ["status IN ('PENDING', 'RUNNING', 'SUSPENDED')", "version IS NOT ?"], [c.to_version]
        if c.from_version is not None:
            where.append("version = ?")
            params.append(c.from_version)
        if c.flow_ids is not None:
            where.append("flow_id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(c.flow_ids)))
        moving = db.execute(f"SELECT flow_id, version FROM flows WHERE {' AND '.join(where)}", params).fetchall()
        db.executemany("UPDATE flows SET version = ?, updated_at = ? WHERE flow_id = ?",
                       [(c.to_version, now, flow_id) for flow_id, _ in moving])
        for flow_id, old in moving:
            self._event(db, flow_id, now, migrated_event(old, c.to_version))
        return len(moving)
