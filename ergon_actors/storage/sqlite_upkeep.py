"""SQLite handlers of the cron schedule and retention commands.

Mixed into SqliteExecutionLog; each handler runs inside the batch's transaction.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ..errors import ScheduleNotFoundError
from .commands import Scheduled, ScheduleFlow
from .schedules import check_change, check_prune, check_put
from .upkeep_commands import ChangeSchedule, CronSchedule, FireSchedule, ListSchedules, PruneFlows, PutSchedule

__all__ = ["SqliteUpkeep", "VACUUM_PAGES"]

VACUUM_PAGES = 16384  # free pages given back to the file system after one prune, at most
_COLUMNS = "name, cron, flow_type, args, missed, paused, last_tick, revision, created_at"
# ended flows of a status created before the cutoff, walking the (status, created_at) index: a flow
# that ended before the cutoff was created before it
_PRUNABLE = ("SELECT flow_id FROM flows f WHERE status = ? AND created_at < ? AND updated_at < ? "
             "AND (parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM flows p WHERE p.flow_id = f.parent_id "
             "AND p.status NOT IN ('COMPLETE', 'FAILED', 'CANCELLED'))) LIMIT ?")


def _schedule(row: tuple[Any, ...]) -> CronSchedule:
    name, cron, flow_type, args, missed, paused, last_tick, revision, created_at = row
    return CronSchedule(name, cron, flow_type, args, missed, bool(paused), last_tick, revision, created_at)


class SqliteUpkeep:
    """Schedules in the schedules table; prune deletes a flow with its steps and events; counts
come from the flow_counts table."""

    if TYPE_CHECKING:
        def _ScheduleFlow(self, db: sqlite3.Connection, c: ScheduleFlow, now: float) -> Scheduled: ...

    @staticmethod
    def _get_schedule(db: sqlite3.Connection, name: str) -> CronSchedule | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM schedules WHERE name = ?", (name,)).fetchone()
        return None if row is None else _schedule(row)

    def _PutSchedule(self, db: sqlite3.Connection, c: PutSchedule, now: float) -> CronSchedule:
        check_put(c)
        db.execute(f"INSERT INTO schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, ?, 1, ?) "
                   "ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, flow_type = excluded.flow_type, "
                   "args = excluded.args, missed = excluded.missed, revision = revision + 1 "
                   "WHERE (cron, flow_type, args, missed) "
                   "IS NOT (excluded.cron, excluded.flow_type, excluded.args, excluded.missed)",
                   (c.name, c.cron, c.flow_type, c.args, c.missed, now, now))
        found = self._get_schedule(db, c.name)
        assert found is not None  # written above, in this transaction
        return found

    def _ListSchedules(self, db: sqlite3.Connection, c: ListSchedules, now: float) -> list[CronSchedule]:
        return [_schedule(r) for r in db.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY name")]

    def _ChangeSchedule(self, db: sqlite3.Connection, c: ChangeSchedule, now: float) -> CronSchedule | None:
        check_change(c)
        if c.action == "delete":
            if db.execute("DELETE FROM schedules WHERE name = ?", (c.name,)).rowcount == 0:
                raise ScheduleNotFoundError(c.name)
            return None
        if c.action == "pause":
            db.execute("UPDATE schedules SET paused = 1 WHERE name = ?", (c.name,))
        else:
            db.execute("UPDATE schedules SET paused = 0, last_tick = max(last_tick, ?) WHERE name = ? AND paused = 1",
                       (now, c.name))
        found = self._get_schedule(db, c.name)
        if found is None:
            raise ScheduleNotFoundError(c.name)
        return found

    def _FireSchedule(self, db: sqlite3.Connection, c: FireSchedule, now: float) -> list[str]:
        s = self._get_schedule(db, c.name)
        if s is None or s.paused or s.revision != c.revision:
            return []
        created = [flow_id for tick, flow_id in zip(c.ticks, c.flow_ids, strict=True)
                   if tick > s.last_tick and self._ScheduleFlow(db, ScheduleFlow(flow_id, s.flow_type, s.args),
                                                                now).created]
        db.execute("UPDATE schedules SET last_tick = ? WHERE name = ? AND last_tick < ?",
                   (c.through, c.name, c.through))
        return created

    def _PruneFlows(self, db: sqlite3.Connection, c: PruneFlows, now: float) -> int:
        gone: list[tuple[str]] = []
        for status in check_prune(c):
            rows = db.execute(_PRUNABLE, (status, c.before, c.before, c.limit - len(gone))).fetchall()
            gone += rows
        for table in ("steps", "events", "flows"):
            db.executemany(f"DELETE FROM {table} WHERE flow_id = ?", gone)
        if gone:
            # Python's sqlite3 steps a statement without result columns once, and each step of
            # incremental_vacuum gives back one page: step it once per free page (20 us each).
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            for _ in range(min(free, VACUUM_PAGES)):
                db.execute("PRAGMA incremental_vacuum")
        return len(gone)
