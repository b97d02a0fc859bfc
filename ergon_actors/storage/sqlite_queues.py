"""The SQLite store's named queues: their limits, and which due flows a claim may take from them.

The rules are storage/queue_rules.py's. Flows of named queues have indexes of their own (schema
version 4), so a claim of the default queue never walks them, and a queue with no room costs a
claim a few index probes.
"""

from __future__ import annotations

import functools
import json
import sqlite3

from ..core.queues import QueueLimits, QueueState
from .commands import ClaimFlows, DeclareQueue, QueueStats, ScheduleFlow
from .queue_rules import Candidate, Load, admit, candidates_wanted, interleave

__all__ = ["SqliteQueues"]

_LIMITS = "name, concurrency, worker_concurrency, key_concurrency, rate_limit, rate_period"
_NOT_BLOCKED = "AND (queue_key IS NULL OR queue_key NOT IN (SELECT value FROM json_each(:blocked))) "
SERVES = "AND (version IS NULL OR version = :v) "  # a claim of a worker serving version :v (rules.serves)


@functools.lru_cache(maxsize=32)
def _waiting(types: int | None, versioned: bool = False) -> str:
    """SQL for a queue's due PENDING and SUSPENDED flows of `types` named types (:t0, ...) or of any
    (`versioned`: of version :v or none), by priority (higher first), due time and schedule order,
    leaving out keys at their limit.

    A PENDING branch per type walks the (queue, type, status, priority, due) index in order and
    stops at :m; SUSPENDED flows (few of them due at once) come from the due-time index."""
    of_types = "" if types is None else "AND flow_type IN (" + ", ".join(f":t{i}" for i in range(types)) + ") "
    serves = SERVES if versioned else ""
    walk = "" if types is None else "INDEXED BY flows_queued "  # by priority: never sort the backlog
    pending = [f"SELECT * FROM (SELECT flow_id, queue_key, priority, ready_at, rowid AS r FROM flows {walk}"
               f"WHERE queue = :q {where}AND status = 'PENDING' AND ready_at <= :now {serves}{_NOT_BLOCKED}"
               f"ORDER BY priority DESC, ready_at LIMIT :m)"
               for where in ([of_types] if types is None else [f"AND flow_type = :t{i} " for i in range(types)])]
    suspended = (f"SELECT * FROM (SELECT flow_id, queue_key, priority, ready_at, rowid AS r FROM flows "
                 f"WHERE queue = :q AND status = 'SUSPENDED' AND ready_at <= :now {of_types}{serves}{_NOT_BLOCKED}"
                 f"ORDER BY ready_at LIMIT :m)")
    return " UNION ALL ".join([*pending, suspended]) + " ORDER BY priority DESC, ready_at, r LIMIT :m"


@functools.lru_cache(maxsize=32)
def _lapsed(types: int | None, versioned: bool = False) -> str:
    """SQL for a queue's RUNNING flows whose lease lapsed, of `types` named types or of any
    (`versioned`: of version :v or none)."""
    of_types = "" if types is None else "AND flow_type IN (" + ", ".join(f":t{i}" for i in range(types)) + ") "
    serves = SERVES if versioned else ""
    return ("SELECT flow_id, queue_key FROM flows WHERE queue = :q AND status = 'RUNNING' "
            f"AND lease_expires <= :now {of_types}{serves}ORDER BY lease_expires LIMIT :m")


def _limits(row: tuple[object, ...]) -> QueueLimits | None:
    """The QueueLimits of a queues row; None for a queue never declared."""
    if row[5] is None:
        return None
    return QueueLimits(*row)  # type: ignore[arg-type]


class SqliteQueues:
    """Named queues in the SQLite store's tables `queues` and `queue_starts`."""

    @staticmethod
    def _dedup(db: sqlite3.Connection, c: ScheduleFlow) -> str | None:
        """The live flow of c's queue with c's dedup_id, if there is one."""
        row = db.execute("SELECT flow_id FROM flows WHERE dedup_id = ? AND queue IS ? AND status IN "
                         "('PENDING', 'RUNNING', 'SUSPENDED') LIMIT 1", (c.dedup_id, c.queue)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _known_queue(db: sqlite3.Connection, queue: str) -> None:
        db.execute("INSERT INTO queues (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (queue,))

    def _queued_claim(self, db: sqlite3.Connection, c: ClaimFlows, now: float,
                      params: dict[str, object]) -> list[str]:
        """The flows of named queues claim c takes (round robin across the queues), their starts counted."""
        picks: list[tuple[str, QueueLimits | None, list[str]]] = []
        types = None if c.flow_types is None else len(c.flow_types)
        for row in db.execute(f"SELECT {_LIMITS} FROM queues ORDER BY name").fetchall():
            name, limits = str(row[0]), _limits(row)
            picked = self._pick(db, c, now, params, name, limits, types, None)
            if picked:
                picks.append((name, limits, picked))
        taken = interleave([p for _, _, p in picks], c.limit)
        chosen = set(taken)
        for name, limits, picked in picks:
            self._record_starts(db, name, limits, [i for i in picked if i in chosen], now)
        return taken

    def _queued_suspects(self, db: sqlite3.Connection, c: ClaimFlows, now: float, params: dict[str, object],
                         group: list[str]) -> list[str]:
        """The flows of a group of due suspects claim c may take: each of a named queue if its queue has room."""
        out: list[str] = []
        by_queue: dict[str, list[str]] = {}
        for flow_id in group:
            queue = self._queue_of(db, flow_id)
            if queue is None:
                out.append(flow_id)
            else:
                by_queue.setdefault(queue, []).append(flow_id)
        for queue, members in sorted(by_queue.items()):
            row = db.execute(f"SELECT {_LIMITS} FROM queues WHERE name = ?", (queue,)).fetchone()
            limits = None if row is None else _limits(row)
            picked = self._pick(db, c, now, params, queue, limits, None, members)
            self._record_starts(db, queue, limits, picked, now)
            out += picked
        return out

    @staticmethod
    def _queue_of(db: sqlite3.Connection, flow_id: str) -> str | None:
        row = db.execute("SELECT queue FROM flows WHERE flow_id = ?", (flow_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    @staticmethod
    def _load(db: sqlite3.Connection, queue: str, limits: QueueLimits | None, worker: str, now: float) -> Load:
        load = Load()
        if limits is None:
            return load
        if limits.concurrency is not None or limits.worker_concurrency is not None:
            running, mine = db.execute("SELECT count(*), coalesce(sum(owner = ?), 0) FROM flows "
                                       "WHERE queue = ? AND status = 'RUNNING'", (worker, queue)).fetchone()
            load.running, load.mine = running, mine
        if limits.key_concurrency is not None:
            load.keys = dict(db.execute("SELECT queue_key, count(*) FROM flows WHERE queue = ? AND status = 'RUNNING' "
                                        "AND queue_key IS NOT NULL GROUP BY queue_key", (queue,)).fetchall())
        if limits.rate_limit is not None:
            db.execute("DELETE FROM queue_starts WHERE queue = ? AND at <= ?", (queue, now - limits.rate_period))
            load.starts = db.execute("SELECT count(*) FROM queue_starts WHERE queue = ?", (queue,)).fetchone()[0]
        return load

    def _pick(self, db: sqlite3.Connection, c: ClaimFlows, now: float, params: dict[str, object], queue: str,
              limits: QueueLimits | None, types: int | None, only: list[str] | None) -> list[str]:
        """The flows of one queue claim c may take: lapsed leases first, then the waiting flows;
        with `only`, of those flows (suspects) only."""
        load = self._load(db, queue, limits, c.worker_id, now)
        want = len(only) if only is not None else c.limit
        m = candidates_wanted(limits, load, want)
        if m <= 0:
            return []
        if only is not None:
            rows = [db.execute("SELECT flow_id, queue_key, status = 'RUNNING' FROM flows WHERE flow_id = ?",
                               (flow_id,)).fetchone() for flow_id in only]
            return admit(limits, load, want, [(r[0], r[1], bool(r[2])) for r in rows])
        blocked = [k for k, n in load.keys.items() if limits is not None and limits.key_concurrency is not None
                   and n >= limits.key_concurrency]
        query = {**params, "q": queue, "m": m, "blocked": json.dumps(blocked)}
        versioned = c.version is not None
        candidates: list[Candidate] = [(r[0], r[1], True) for r in db.execute(_lapsed(types, versioned), query)]
        full = limits is not None and limits.concurrency is not None and load.running >= limits.concurrency
        if not full:  # a full queue can only hand over lapsed leases
            candidates += [(r[0], r[1], False) for r in db.execute(_waiting(types, versioned), query)]
        return admit(limits, load, want, candidates)

    @staticmethod
    def _record_starts(db: sqlite3.Connection, queue: str | None, limits: QueueLimits | None, ids: list[str],
                       now: float) -> None:
        """Count claims of a rate-limited queue in its window."""
        if queue is not None and limits is not None and limits.rate_limit is not None and ids:
            db.executemany("INSERT INTO queue_starts VALUES (?, ?)", [(queue, now)] * len(ids))

    @staticmethod
    def _due_counts(db: sqlite3.Connection, queue: str, now: float, limit: int) -> tuple[int, int]:
        """A named queue's due flows: (PENDING or SUSPENDED, RUNNING with a lapsed lease), each
        count stopping at limit (-1: no limit)."""
        counts = [db.execute(f"SELECT count(*) FROM (SELECT 1 FROM flows WHERE queue = ? AND status = ? "
                             f"AND {column} <= ? LIMIT ?)", (queue, status, now, limit)).fetchone()[0]
                  for status, column in (("PENDING", "ready_at"), ("SUSPENDED", "ready_at"),
                                         ("RUNNING", "lease_expires"))]
        return counts[0] + counts[1], counts[2]

    def _queued_due(self, db: sqlite3.Connection, now: float, limit: int) -> int:
        """Flows of named queues runnable now (each count stops at limit; -1: no limit)."""
        return sum(sum(self._due_counts(db, name, now, limit))
                   for (name,) in db.execute("SELECT name FROM queues").fetchall())

    @staticmethod
    def _queued_next_due(db: sqlite3.Connection) -> float | None:
        """The earliest time a flow of a named queue becomes runnable (of any type: a hint for an
        idle worker, one probe per queue and status)."""
        times = []
        for (name,) in db.execute("SELECT name FROM queues").fetchall():
            for status, column in (("RUNNING", "lease_expires"), ("PENDING", "ready_at"), ("SUSPENDED", "ready_at")):
                times.append(db.execute(f"SELECT min({column}) FROM flows WHERE queue = ? AND status = ?",
                                        (name, status)).fetchone()[0])
        return min((float(t) for t in times if t is not None), default=None)

    def _DeclareQueue(self, db: sqlite3.Connection, c: DeclareQueue, now: float) -> bool:
        q = c.limits
        values = (q.name, q.concurrency, q.worker_concurrency, q.key_concurrency, q.rate_limit, q.rate_period)
        keep = "" if c.replace else "WHERE queues.rate_period IS NULL"
        cursor = db.execute(f"INSERT INTO queues VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                            "concurrency = excluded.concurrency, worker_concurrency = excluded.worker_concurrency, "
                            "key_concurrency = excluded.key_concurrency, rate_limit = excluded.rate_limit, "
                            f"rate_period = excluded.rate_period {keep}", values)
        return cursor.rowcount > 0

    def _QueueStats(self, db: sqlite3.Connection, c: QueueStats, now: float) -> list[QueueState]:
        out = []
        for row in db.execute(f"SELECT {_LIMITS} FROM queues ORDER BY name LIMIT ?", (c.limit,)).fetchall():
            name, limits = str(row[0]), _limits(row)
            counts = dict(db.execute("SELECT status, count(*) FROM flows WHERE queue = ? AND status IN "
                                     "('PENDING', 'RUNNING', 'SUSPENDED') GROUP BY status", (name,)).fetchall())
            waiting, lapsed = self._due_counts(db, name, now, -1)
            starts = 0
            if limits is not None and limits.rate_limit is not None:
                starts = db.execute("SELECT count(*) FROM queue_starts WHERE queue = ? AND at > ?",
                                    (name, now - limits.rate_period)).fetchone()[0]
            live = counts.get("PENDING", 0) + counts.get("SUSPENDED", 0)
            out.append(QueueState(name, limits, waiting + lapsed, counts.get("RUNNING", 0), live - waiting, starts))
        return out
