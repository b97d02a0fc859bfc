"""SQLite store: WAL, a schema-version row, one transaction per group of batches of commands."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ..core import TERMINAL, Failure, FlowRecord, FlowStatus, StepRecord, StepStatus
from ..errors import (ConfigError, FencedError, FlowBusyError, FlowNotFoundError, InvalidCommandError,
                      StoreError, StoreUnavailableError)
from .base import LogBase
from .commands import (AppendStep, AwaitSignal, CancelFlow, Claim, ClaimFlows, Command, CountFlows, NextDue,
                       FinishFlow, GetFlow, InvokeChild, ListFlows, LoadSteps, RecordCrash, ReleaseWorker,
                       RenewLeases, Scheduled, ScheduleFlow, SendSignal, SuspendFlow, WaitingSignals)
from .crashes import check, crashed, in_flight
from .events import (Event, claim_events, crash_events, dumps, fenced_event, finish_event, scheduled_event,
                     step_event, suspend_event)
from .pyergon_records import SqliteRecords
from .records import dump_crashes, dump_failure
from .rules import REFUSALS, child_outcome, fence, invalid
from .sqlite_operate import SqliteOperations, error_type
from .sqlite_queues import SERVES as _SERVES
from .sqlite_queues import SqliteQueues
from .sqlite_rows import FLOW_COLUMNS as _FLOW_COLUMNS
from .sqlite_rows import STEP_COLUMNS as _STEP_COLUMNS
from .sqlite_rows import flow_row as _flow
from .sqlite_rows import step_row as _step
from .sqlite_schema import SCHEMA_VERSION, open_schema
from .sqlite_thread import ConnectionThread, InlineConnection
from .sqlite_upkeep import SqliteUpkeep

__all__ = ["SqliteExecutionLog", "SCHEMA_VERSION"]

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
INLINE_BUSY_MS = 1000  # how long an inline store waits for another process's write lock

_DUE = "((status = 'RUNNING' AND lease_expires <= :now) OR (status IN ('PENDING', 'SUSPENDED') AND ready_at <= :now))"
# the next seq: one probe of the primary key from its end (an aggregate over it costs 3 times more)
_EVENT = ("INSERT INTO events VALUES (?, coalesce((SELECT seq FROM events WHERE flow_id = ? ORDER BY seq DESC "
          "LIMIT 1), 0) + 1, ?, ?, ?)")

# a step's write: it never replaces a complete step (a re-send changes nothing)
_STEP_UPSERT = ("INSERT INTO steps {values} ON CONFLICT (flow_id, position) DO UPDATE SET "
                "name = excluded.name, args_hash = excluded.args_hash, status = excluded.status, "
                "result = excluded.result, error = excluded.error, attempt = excluded.attempt, "
                "completed_at = excluded.completed_at, tries = excluded.tries, retry_at = excluded.retry_at "
                "WHERE steps.status != 'COMPLETE'")
_PLAIN_STEP_UPSERT = _STEP_UPSERT.format(values="VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# the same, only while the epoch owns the running flow and no cancel is asked (rules.fence passes)
_FENCED_STEP_UPSERT = _STEP_UPSERT.format(
    values="SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM flows WHERE flow_id = ? AND epoch = ? "
           "AND status = 'RUNNING' AND cancel_requested = 0")


def _step_params(flow_id: str, s: StepRecord, now: float) -> tuple[object, ...]:
    """The values of a steps row for step s of flow_id, written at `now`."""
    return (flow_id, s.position, s.name, s.args_hash, s.status, s.result,
            None if s.error is None else dump_failure(s.error), s.attempt, now, s.tries, s.retry_at)


_ANY_SUSPECT = "SELECT 1 FROM flows INDEXED BY flows_suspect WHERE suspect > 0 LIMIT 1"  # the partial index's head


def _is_due(at: float | None, now: float) -> bool:
    """Whether the earliest due time a probe found (None: nothing waits) has come."""
    return at is not None and at <= now

# runnable flows of the default queue, counted on its partial claim indexes without sorting them
_DUE_COUNT = ("SELECT count(*) FROM (SELECT 1 FROM flows WHERE status = 'RUNNING' AND lease_expires <= :now "
              "AND queue IS NULL UNION ALL SELECT 1 FROM flows WHERE status IN ('PENDING', 'SUSPENDED') "
              "AND ready_at <= :now AND queue IS NULL LIMIT :n)")


@functools.lru_cache(maxsize=32)
def _claimable(types: int | None, versioned: bool = False) -> str:
    """SQL for runnable flows (due first), of `types` named types (:t0, :t1, ...) or of any;
    `versioned`: only of version :v or of none.

    One branch per status and type walks the (status, flow_type, time) index in order and stops
    at :n, so a claim never scans the queue, also when it is full of types nobody here serves.
    Flows of the default queue only: those of named queues are claimed by sqlite_queues.py.
    (Due flows of other versions are stepped over: they are few while their version is served.)
    """
    filters = [""] if types is None else [f"AND flow_type = :t{i} " for i in range(types)]
    filters = [f + _SERVES for f in filters] if versioned else filters
    branches = [f"SELECT * FROM (SELECT flow_id, {column} AS due FROM flows WHERE status = '{status}' "
                f"AND {column} <= :now AND queue IS NULL {where}ORDER BY {column} LIMIT :n)"
                for status, column in (("RUNNING", "lease_expires"), ("SUSPENDED", "ready_at"),
                                       ("PENDING", "ready_at"))
                for where in filters]
    return " UNION ALL ".join(branches) + " ORDER BY due LIMIT :n"


@functools.lru_cache(maxsize=32)
def _next_due(types: int | None) -> str:
    """SQL for the earliest time a flow of `types` (:t0, :t1, ...) or of any becomes runnable:
    one probe of the head of each (status, flow_type, time) index range. Flows of the default
    queue only: sqlite_queues.py adds those of named queues."""
    filters = [""] if types is None else [f"AND flow_type = :t{i} " for i in range(types)]
    return "SELECT min(due) FROM (" + " UNION ALL ".join(
        f"SELECT min({column}) AS due FROM flows WHERE status = '{status}' AND queue IS NULL {where}"
        for status, column in (("RUNNING", "lease_expires"), ("SUSPENDED", "ready_at"), ("PENDING", "ready_at"))
        for where in filters) + ")"


@functools.lru_cache(maxsize=32)
def _suspects_due(types: int | None, versioned: bool = False) -> str:
    """SQL for the earliest due suspects of `types` named types (:t0, :t1, ...) or of any (`versioned`:
    of version :v or none), whose group size is at least :size, at most :n of them; suspects are
    few, and the partial index on them makes this one probe while there are none."""
    where = "" if types is None else "AND flow_type IN (" + ", ".join(f":t{i}" for i in range(types)) + ") "
    where += _SERVES if versioned else ""
    return (f"SELECT flow_id, suspect FROM flows INDEXED BY flows_suspect WHERE suspect > 0 AND suspect >= :size "
            f"{where}AND {_DUE} ORDER BY CASE status WHEN 'RUNNING' THEN lease_expires ELSE ready_at END, "
            "flow_id LIMIT :n")


T = TypeVar("T")


# Result codes (the low byte of an extended code) that are about the store, not a command: busy or
# locked by another process, out of memory, read-only file or file system, interrupted, I/O
# error, disk full, cannot open, lock protocol. The same batch may succeed once the cause is gone.
_UNAVAILABLE = {5, 6, 7, 8, 9, 10, 13, 14, 15}
_BROKEN = {11, 26}  # corrupt, not a database: no retry can help


def _code(exc: BaseException) -> int | None:
    """SQLite's primary result code of an error, None for any other error."""
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return None if code is None else code & 0xFF


def _store_fault(exc: BaseException) -> bool:
    """True when an error met while applying a command is the store's, not the command's."""
    return _code(exc) in _UNAVAILABLE | _BROKEN


def _fail(group: list[tuple[Sequence[Command], asyncio.Future[list[object]]]], exc: Exception) -> None:
    """Fail every call of a group whose transaction failed."""
    for _, future in group:
        if not future.done():
            future.set_exception(exc)


class _CommandFailed(Exception):
    """One command of a transaction failed on its own content: roll back, apply the rest without it."""

    def __init__(self, index: int, error: InvalidCommandError) -> None:
        super().__init__(index)
        self.index = index
        self.error = error


class _Lease(NamedTuple):
    epoch: int
    status: str
    cancel_requested: bool


class SqliteExecutionLog(SqliteQueues, SqliteOperations, SqliteUpkeep, SqliteRecords, LogBase):
    """A store in one SQLite file.

    Args:
        path: the database file (created, with its folder, if missing), or ":memory:".
        synchronous: OFF, NORMAL, FULL (default: an answered commit survives power loss) or EXTRA.
        inline: run every transaction on the event loop's own thread, blocking the loop while it
            commits, instead of on a thread of the store's own (two thread hops per transaction
            saved). The calls made in one turn of the loop share the transaction run at its next
            turn, so many flows of one process still share one fsync. A write lock held by
            another process then fails a transaction with StoreUnavailableError after
            INLINE_BUSY_MS, not 10 s, so the loop is never blocked long.
        at_once: inline, and each execute() call commits at once in a transaction of its own,
            for a caller that collects its own batches (the journal): a turn of the loop sooner.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", inline: bool = False,
                 at_once: bool = False) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.inline = inline or at_once
        self.at_once = at_once
        self._conn: ConnectionThread | InlineConnection | None = None
        self._waiting: list[tuple[Sequence[Command], asyncio.Future[list[object]]]] = []
        self._committing = False
        self._committer: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        # worker -> its last claim request_id (as the memory store keeps it): a re-send whose
        # first answer holds no running flow any more must still claim nothing new.
        self._last_claim: dict[str, str] = {}
        self._batch_claims: dict[str, str] = {}  # this batch's claims, kept once it commits

    def __repr__(self) -> str:
        where = "in-memory" if self.path == ":memory:" else repr(self.path)
        return (f"{type(self).__name__}({where}, synchronous={self.synchronous!r}, "
                f"connected={self._conn is not None})")

    @classmethod
    async def in_memory(cls) -> SqliteExecutionLog:
        """A connected store in a private in-memory database."""
        store = cls(":memory:")
        await store.connect()
        return store

    async def connect(self) -> SqliteExecutionLog:
        """Open the file and check it is ours, creating its folder and the schema when missing.

        Raises:
            StoreError: not a SQLite file, a SQLite file of another application, or a folder
                that cannot be created.
            StoreUnavailableError: the file cannot be opened or written right now (locked, disk
                full, I/O error); the same call may succeed later.
            SchemaVersionError: written by a newer version of ergon_actors.
        """
        if self._conn is not None:
            return self
        folder = Path(self.path).parent
        if self.path not in ("", ":memory:") and not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of the SQLite store {self.path!r}: {exc}") from exc
        self._conn = InlineConnection(self.path) if self.inline else ConnectionThread(self.path)
        try:
            await self._run(self._open)
        except sqlite3.Error as exc:
            await self.close()
            if _code(exc) in _UNAVAILABLE:
                raise self._fault(exc) from exc
            raise StoreError(f"cannot open {self.path!r} as an ergon_actors store: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Finish the work already handed to the connection, then close it."""
        if self.inline:
            self._commit_inline()  # the calls of this turn, before the connection goes
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # A whole batch runs as one call on the connection's thread: one thread hop per batch
        # instead of one per statement, which is what makes group commit pay.
        if self._conn is None:
            raise StoreError("store is not connected: await store.connect() first")
        return await self._conn.run(fn)

    def _fault(self, exc: sqlite3.Error) -> StoreError:
        """The error to raise for a failure of the store itself, keeping SQLite's own words."""
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        if _code(exc) in _UNAVAILABLE:
            return StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc} ({name})")
        return StoreError(f"SQLite store {self.path!r} failed: {exc} ({name})")

    def _open(self, db: sqlite3.Connection) -> None:
        open_schema(db, self.path)
        db.create_function("ergon_error_type", 1, error_type, deterministic=True)
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        if self.inline:
            db.execute(f"PRAGMA busy_timeout = {INLINE_BUSY_MS}")

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        """Apply the commands in one transaction, shared with the calls waiting beside this one.

        Raises:
            StoreUnavailableError: the store cannot commit right now (disk full, I/O error,
                locked); nothing was applied, and the same commands may be sent again.
            StoreError: the store is broken (corrupt) or not connected.
        """
        if self._conn is None:
            raise StoreError("store is not connected: await store.connect() first")
        if self.at_once:
            results = self._call_inline(commands)
            self.notify(commands)
            return results
        # Calls made while a transaction runs wait and then share the next one (group commit):
        # many flows in one process pay one fsync between them, as they do through the journal.
        # Inline, the calls of one turn of the event loop share the transaction run at its next turn.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[object]] = loop.create_future()
        self._waiting.append((commands, future))
        if not self._committing:
            self._committing = True
            if self.inline:
                loop.call_soon(self._commit_inline)
            else:
                self._committer = loop.create_task(self._commit_waiting())
        return await future

    def _commit_inline(self) -> None:
        """Commit the calls made since the last turn of the loop, on the loop's thread."""
        group, self._waiting, self._committing = self._waiting, [], False
        if not group:
            return
        commands = [c for batch, _ in group for c in batch]
        try:
            results = self._call_inline(commands)
        except Exception as exc:  # about the store, never one command: every caller gets it
            _fail(group, exc)
            return
        self._answer(group, commands, results)

    def _call_inline(self, commands: Sequence[Command]) -> list[object]:
        """Commit the commands now, on the loop's thread."""
        conn = self._conn
        if not isinstance(conn, InlineConnection):
            raise StoreError("store is not connected: await store.connect() first")
        return conn.call(lambda db: self._apply(db, commands))

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._commit_group(group)
        finally:
            self._committing = False

    async def _commit_group(self, group: list[tuple[Sequence[Command], asyncio.Future[list[object]]]]) -> None:
        commands = [c for batch, _ in group for c in batch]
        try:
            results = await self._run(lambda db: self._apply(db, commands))
        except Exception as exc:  # about the store, never one command: every caller gets it
            _fail(group, exc)
            return
        self._answer(group, commands, results)

    def _answer(self, group: list[tuple[Sequence[Command], asyncio.Future[list[object]]]],
                commands: list[Command], results: list[object]) -> None:
        """Hand each caller of a committed group its share of the results, then wake listeners."""
        start = 0
        for batch, future in group:
            if not future.done():
                future.set_result(results[start:start + len(batch)])
            start += len(batch)
        self.notify(commands)

    def _apply(self, db: sqlite3.Connection, commands: Sequence[Command]) -> list[object]:
        """Commit the commands; a command failing on its own content gets its error in its place.

        Such a command may have written before it failed, so the transaction is rolled back and
        applied again without it; this costs nothing while commands are sound.
        """
        failed: dict[int, InvalidCommandError] = {}
        while True:
            try:
                return self._transaction(db, commands, failed)
            except _CommandFailed as exc:
                failed[exc.index] = exc.error
            except sqlite3.Error as exc:  # BEGIN or COMMIT failed, or a command met a store fault
                raise self._fault(exc) from exc

    def _transaction(self, db: sqlite3.Connection, commands: Sequence[Command],
                     failed: dict[int, InvalidCommandError]) -> list[object]:
        results: list[object] = []
        if db.in_transaction:  # a rollback that failed earlier left it open
            db.execute("ROLLBACK")
        db.execute("BEGIN IMMEDIATE")
        # the time of the transaction, read under the write lock: several processes writing one
        # file commit in the order of their times, which rate limits and event histories rely on
        now = time.time()
        try:
            for index, command in enumerate(commands):
                if index in failed:
                    results.append(failed[index])
                    continue
                try:
                    results.append(getattr(self, "_" + type(command).__name__)(db, command, now))
                except REFUSALS as exc:
                    results.append(exc)
                except Exception as exc:
                    if _store_fault(exc):
                        raise
                    raise _CommandFailed(index, invalid(command, exc)) from exc
            db.execute("COMMIT")
        except BaseException:
            self._batch_claims.clear()
            if db.in_transaction:  # SQLite ends some failed transactions itself (disk full, I/O)
                # the error that matters is the one being raised; the next batch retries
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        self._last_claim.update(self._batch_claims)
        self._batch_claims.clear()
        return results

    @staticmethod
    def _get(db: sqlite3.Connection, flow_id: str) -> FlowRecord | None:
        row = db.execute(f"SELECT {_FLOW_COLUMNS} FROM flows WHERE flow_id = ?", (flow_id,)).fetchone()
        return None if row is None else _flow(row)

    @staticmethod
    def _event(db: sqlite3.Connection, flow_id: str, now: float, event: Event) -> None:
        """Append an event to the flow's history, in the transaction of the change it records."""
        db.execute(_EVENT, (flow_id, flow_id, now, event[0], dumps(event[1])))

    def _refuse(self, db: sqlite3.Connection, command: Any, refused: Exception, now: float) -> Exception:
        """Record a fenced write in its flow's history; returns the refusal to raise."""
        if isinstance(refused, FencedError):
            self._event(db, refused.flow_id, now, fenced_event(command, refused.epoch, refused.reason))
        return refused

    def _ScheduleFlow(self, db: sqlite3.Connection, c: ScheduleFlow, now: float) -> Scheduled:
        if c.dedup_id is not None and self._get(db, c.flow_id) is None:
            existing = self._dedup(db, c)
            if existing is not None:
                return Scheduled(existing, False)
        cursor = db.execute(
            "INSERT INTO flows (flow_id, flow_type, args, status, version, attempt, epoch, ready_at, parent_id, "
            "created_at, updated_at, queue, priority, queue_key, dedup_id) "
            "VALUES (?, ?, ?, 'PENDING', ?, 1, 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (flow_id) DO NOTHING",
            (c.flow_id, c.flow_type, c.args, c.version, now if c.ready_at is None else c.ready_at,
             c.parent_id, now, now, c.queue, c.priority, c.key, c.dedup_id))
        if cursor.rowcount != 1:
            return Scheduled(c.flow_id, False)
        if c.queue is not None:
            self._known_queue(db, c.queue)
        self._event(db, c.flow_id, now, scheduled_event(c.flow_type, c.parent_id, c.ready_at))
        return Scheduled(c.flow_id, True)

    def _ClaimFlows(self, db: sqlite3.Connection, c: ClaimFlows, now: float) -> list[Claim]:
        again = db.execute(f"SELECT {_FLOW_COLUMNS} FROM flows WHERE owner = ? AND claim_request = ? "
                           "AND status = 'RUNNING'", (c.worker_id, c.request_id)).fetchall()
        last = self._batch_claims.get(c.worker_id, self._last_claim.get(c.worker_id))
        if again or last == c.request_id:  # a re-sent claim: answer it again, claim nothing new
            return self._with_steps(db, [_flow(r) for r in again])
        if c.flow_id is not None:
            flow = self._get(db, c.flow_id)
            if flow is None:
                raise FlowNotFoundError(c.flow_id)
            if (flow.status == FlowStatus.RUNNING and flow.lease_expires is not None and flow.lease_expires > now
                    and not c.steal):
                raise FlowBusyError(c.flow_id)
            ids = [] if flow.status in TERMINAL else [c.flow_id]
        else:
            params: dict[str, object] = {"now": now, "n": c.limit, "v": c.version}
            types = None if c.flow_types is None else len(c.flow_types)
            params.update({f"t{i}": name for i, name in enumerate(c.flow_types or ())})
            versioned = c.version is not None
            # the empty path is index probes only: the claim queries below sort each of their
            # branches, which costs some 30 us a branch even when it finds nothing
            first = (db.execute(_suspects_due(types, versioned), {**params, "size": 1, "n": 1}).fetchone()
                     if db.execute(_ANY_SUSPECT).fetchone() is not None else None)
            if first is not None:  # suspects run in their groups: only a worker that runs nothing takes one
                size = {"size": first[1], "n": min(c.limit, first[1]) if c.solo else 0}
                group = [r[0] for r in db.execute(_suspects_due(types, versioned), {**params, **size})]
                ids = self._queued_suspects(db, c, now, params, group)  # each waits for room in its queue
            else:
                ids = self._queued_claim(db, c, now, params)  # named queues first: their limits hold them back
                if len(ids) < c.limit and _is_due(db.execute(_next_due(types), params).fetchone()[0], now):
                    params["n"] = c.limit - len(ids)
                    ids += [r[0] for r in db.execute(_claimable(types, versioned), params)]
        self._batch_claims[c.worker_id] = c.request_id
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        before = db.execute(f"SELECT flow_id, status, owner, epoch, lease_expires, waiting_on FROM flows "
                            f"WHERE flow_id IN ({marks})", ids).fetchall()
        for flow_id, status, owner, epoch, lease_expires, waiting_on in before:
            for event in claim_events(status, owner, epoch, lease_expires, waiting_on, c.worker_id, now):
                self._event(db, flow_id, now, event)
        rows = db.execute(
            f"UPDATE flows SET status = 'RUNNING', epoch = epoch + 1, owner = ?, lease_expires = ?, "
            f"updated_at = ?, claim_request = ?, waiting_on = NULL, version = coalesce(version, ?) "
            f"WHERE flow_id IN ({marks}) RETURNING {_FLOW_COLUMNS}",
            (c.worker_id, now + c.lease_seconds, now, c.request_id, c.version if c.flow_id is None else None,
             *ids)).fetchall()
        return self._with_steps(db, [_flow(r) for r in rows])

    @staticmethod
    def _with_steps(db: sqlite3.Connection, flows: list[FlowRecord]) -> list[Claim]:
        steps: dict[str, list[StepRecord]] = {f.flow_id: [] for f in flows}
        resumed = [f.flow_id for f in flows if f.epoch > 1]  # a first claim has no steps yet
        if resumed:
            marks = ", ".join("?" * len(resumed))
            for row in db.execute(f"SELECT flow_id, {_STEP_COLUMNS} FROM steps WHERE flow_id IN ({marks}) "
                                  "ORDER BY flow_id, position", resumed):
                steps[row[0]].append(_step(row[1:]))
        return [Claim(f, tuple(steps[f.flow_id])) for f in flows]

    def _RenewLeases(self, db: sqlite3.Connection, c: RenewLeases, now: float) -> int:
        sql = "UPDATE flows SET lease_expires = ? WHERE owner = ? AND status = 'RUNNING'"
        if c.flow_ids is None:
            return db.execute(sql, (now + c.lease_seconds, c.worker_id)).rowcount
        marks = ", ".join("?" * len(c.flow_ids))
        return db.execute(f"{sql} AND flow_id IN ({marks})",
                          (now + c.lease_seconds, c.worker_id, *c.flow_ids)).rowcount

    def _ReleaseWorker(self, db: sqlite3.Connection, c: ReleaseWorker, now: float) -> int:
        released = db.execute("UPDATE flows SET status = 'PENDING', owner = NULL, lease_expires = NULL, "
                              "ready_at = ?, updated_at = ? WHERE owner = ? AND status = 'RUNNING' "
                              "RETURNING flow_id, epoch", (now, now, c.worker_id)).fetchall()
        for flow_id, epoch in released:
            self._event(db, flow_id, now, ("released", {"worker": c.worker_id, "epoch": epoch}))
        return len(released)

    def _RecordCrash(self, db: sqlite3.Connection, c: RecordCrash, now: float) -> list[FlowRecord]:
        check(c)
        held = [_flow(r) for r in db.execute(f"SELECT {_FLOW_COLUMNS} FROM flows WHERE owner = ? "
                                             "AND status = 'RUNNING' ORDER BY flow_id", (c.worker_id,))]
        out = []
        for flow in held:
            steps = db.execute("SELECT position, name, status FROM steps WHERE flow_id = ?", (flow.flow_id,))
            flow = crashed(flow, c, in_flight(steps), len(held), now)
            db.execute("UPDATE flows SET status = ?, owner = NULL, lease_expires = NULL, ready_at = ?, error = ?, "
                       "crashes = ?, suspect = ?, quarantined = ?, updated_at = ? WHERE flow_id = ?",
                       (flow.status, flow.ready_at, None if flow.error is None else dump_failure(flow.error),
                        dump_crashes(flow.crashes), flow.suspect, flow.quarantined, now, flow.flow_id))
            for event in crash_events(flow):
                self._event(db, flow.flow_id, now, event)
            if flow.status in TERMINAL:
                self._child_ended(db, flow.parent_id, flow.flow_id, flow.status, now)
            out.append(flow)
        return out

    def _recorded(self, db: sqlite3.Connection, flow_id: str, epoch: int, position: int) -> StepRecord | None:
        """The step already journaled at this position by this epoch (a re-sent request)."""
        columns = ", ".join(f"steps.{c}" for c in _STEP_COLUMNS.split(", "))
        row = db.execute(f"SELECT {columns} FROM steps JOIN flows USING (flow_id) "
                         "WHERE flow_id = ? AND position = ? AND epoch = ?", (flow_id, position, epoch)).fetchone()
        return None if row is None else _step(row)

    def _fence(self, db: sqlite3.Connection, c: AppendStep | AwaitSignal | InvokeChild, now: float,
               position: int = -1) -> str | None:
        """Raise the refusal for command c's write at its epoch; returns the status of the step
        at `position`."""
        row = db.execute("SELECT f.epoch, f.status, f.cancel_requested, s.status FROM flows f LEFT JOIN steps s "
                         "ON s.flow_id = f.flow_id AND s.position = ? WHERE f.flow_id = ?",
                         (position, c.flow_id)).fetchone()
        lease = None if row is None else _Lease(row[0], row[1], bool(row[2]))
        step: str | None = None if row is None else row[3]
        if lease is not None and lease.epoch == c.epoch and step == StepStatus.COMPLETE:
            return step  # a re-sent write of a step already journaled: nothing to refuse
        refused = fence(lease, c.flow_id, c.epoch)
        if refused is not None:
            raise self._refuse(db, c, refused, now)
        return step

    @staticmethod
    def _insert_step(db: sqlite3.Connection, flow_id: str, s: StepRecord, now: float) -> StepRecord:
        db.execute(_PLAIN_STEP_UPSERT, _step_params(flow_id, s, now))
        return StepRecord(s.position, s.name, s.args_hash, s.status, s.result, s.error, s.attempt, now,
                          s.tries, s.retry_at)

    def _AppendStep(self, db: sqlite3.Connection, c: AppendStep, now: float) -> None:
        # One statement writes the step while the epoch owns the flow (the conditions of rules.fence)
        # and the step is not complete yet. When it writes nothing, either the fence refuses the
        # write (_fence raises why) or this epoch journaled the step already (a re-send: nothing to do).
        if db.execute(_FENCED_STEP_UPSERT, (*_step_params(c.flow_id, c.step, now), c.flow_id, c.epoch)).rowcount:
            self._event(db, c.flow_id, now, step_event(c.step))
        else:
            self._fence(db, c, now, c.step.position)
        return None

    def _end(self, db: sqlite3.Connection, c: FinishFlow | SuspendFlow | AwaitSignal | InvokeChild, now: float,
             status: str, sets: str, params: tuple[Any, ...], event: Event | None) -> None:
        """End command c's run of its flow with `status` (fenced by its epoch), recording `event`."""
        flow_id, epoch = c.flow_id, c.epoch
        cancel = "" if status == FlowStatus.CANCELLED else "AND cancel_requested = 0 "
        cursor = db.execute(
            f"UPDATE flows SET status = ?, owner = NULL, lease_expires = NULL, suspect = 0, updated_at = ?, {sets} "
            f"WHERE flow_id = ? AND epoch = ? AND status = 'RUNNING' {cancel}RETURNING parent_id",
            (status, now, *params, flow_id, epoch))
        row = cursor.fetchone()
        if row is not None:
            if event is not None:
                self._event(db, flow_id, now, event)
            if status in TERMINAL:
                self._child_ended(db, row[0], flow_id, status, now)
            return
        flow = self._get(db, flow_id)
        if flow is not None and flow.epoch == epoch and flow.status == status:
            return  # a re-sent command after its commit
        raise self._refuse(db, c, fence(flow, flow_id, epoch) or FencedError(flow_id, epoch), now)

    def _child_ended(self, db: sqlite3.Connection, parent_id: str | None, flow_id: str, status: str,
                     now: float) -> None:
        """Tell a child's parent, in its history and by waking it if it waits for the child."""
        if parent_id is not None and db.execute("SELECT 1 FROM flows WHERE flow_id = ?", (parent_id,)).fetchone():
            self._event(db, parent_id, now, ("child_finished", {"child": flow_id, "status": status}))
            self._wake(db, parent_id, f"child:{flow_id}")

    @staticmethod
    def _wake(db: sqlite3.Connection, flow_id: str | None, waiting_on: str) -> None:
        db.execute("UPDATE flows SET ready_at = ? WHERE flow_id = ? AND status = 'SUSPENDED' AND waiting_on = ?",
                   (time.time(), flow_id, waiting_on))

    def _FinishFlow(self, db: sqlite3.Connection, c: FinishFlow, now: float) -> None:
        self._end(db, c, now, c.status, "result = ?, error = ?, ready_at = NULL, waiting_on = NULL",
                  (c.result, None if c.error is None else dump_failure(c.error)), finish_event(c.status, c.error))

    def _SuspendFlow(self, db: sqlite3.Connection, c: SuspendFlow, now: float) -> None:
        self._end(db, c, now, FlowStatus.SUSPENDED,
                  "ready_at = ?, attempt = coalesce(?, attempt), error = coalesce(?, error), waiting_on = ?",
                  (c.ready_at, c.attempt, None if c.error is None else dump_failure(c.error), c.waiting_on),
                  suspend_event(c.ready_at, c.waiting_on, c.attempt, c.error))

    def _AwaitSignal(self, db: sqlite3.Connection, c: AwaitSignal, now: float) -> StepRecord | None:
        done = self._recorded(db, c.flow_id, c.epoch, c.step.position)
        if done is not None:
            return done
        self._fence(db, c, now)
        row = db.execute("UPDATE signals SET consumer = ? WHERE name = ? AND consumer IS NULL RETURNING payload",
                         (c.flow_id, c.signal)).fetchone()
        if row is not None:
            step = StepRecord(c.step.position, c.step.name, c.step.args_hash, StepStatus.COMPLETE, row[0],
                              attempt=c.step.attempt)
            self._event(db, c.flow_id, now, ("signal_received", {"name": c.signal}))
            return self._insert_step(db, c.flow_id, step, now)
        self._end(db, c, now, FlowStatus.SUSPENDED, "ready_at = ?, waiting_on = ?",
                  (c.ready_at, f"signal:{c.signal}"), ("signal_waiting", {"name": c.signal, "until": c.ready_at}))
        return None

    def _SendSignal(self, db: sqlite3.Connection, c: SendSignal, now: float) -> bool:
        cursor = db.execute("INSERT INTO signals VALUES (?, ?, ?, NULL) ON CONFLICT (name) DO NOTHING",
                            (c.name, c.payload, now))
        if cursor.rowcount == 0:
            return False
        db.execute("UPDATE flows SET ready_at = ? WHERE waiting_on = ? AND status = 'SUSPENDED'",
                   (now, f"signal:{c.name}"))
        return True

    def _InvokeChild(self, db: sqlite3.Connection, c: InvokeChild, now: float) -> StepRecord | None:
        done = self._recorded(db, c.flow_id, c.epoch, c.step.position)
        if done is not None:
            return done
        self._fence(db, c, now)
        child = c.child
        if self._ScheduleFlow(db, dataclasses.replace(child, parent_id=c.flow_id), now).created:
            self._event(db, c.flow_id, now, ("child_started", {"child": child.flow_id, "type": child.flow_type}))
        record = self._get(db, child.flow_id)
        assert record is not None  # scheduled above, in this transaction
        if record.status in TERMINAL:
            step = child_outcome(c.step, record, now)
            self._event(db, c.flow_id, now, step_event(step))
            return self._insert_step(db, c.flow_id, step, now)
        self._end(db, c, now, FlowStatus.SUSPENDED, "ready_at = ?, waiting_on = ?",
                  (c.ready_at, f"child:{child.flow_id}"), None)
        return None

    def _CancelFlow(self, db: sqlite3.Connection, c: CancelFlow, now: float) -> str:
        flow = self._get(db, c.flow_id)
        if flow is None:
            raise FlowNotFoundError(c.flow_id)
        if flow.status in TERMINAL:
            return flow.status
        if flow.status == FlowStatus.RUNNING:
            db.execute("UPDATE flows SET cancel_requested = 1, updated_at = ? WHERE flow_id = ?", (now, c.flow_id))
            self._event(db, c.flow_id, now, ("cancel_requested", {}))
        else:
            db.execute("UPDATE flows SET status = 'CANCELLED', ready_at = NULL, waiting_on = NULL, suspect = 0, "
                       "error = ?, updated_at = ? WHERE flow_id = ?",
                       (dump_failure(Failure.cancelled(c.flow_id)), now, c.flow_id))
            self._event(db, c.flow_id, now, ("cancelled", {}))
            self._child_ended(db, flow.parent_id, c.flow_id, FlowStatus.CANCELLED, now)
        for (child_id,) in db.execute("SELECT flow_id FROM flows WHERE parent_id = ? AND status NOT IN "
                                      "('COMPLETE', 'FAILED', 'CANCELLED')", (c.flow_id,)).fetchall():
            self._CancelFlow(db, CancelFlow(child_id), now)
        flow = self._get(db, c.flow_id)
        assert flow is not None  # found above, in this transaction
        return flow.status

    def _WaitingSignals(self, db: sqlite3.Connection, c: WaitingSignals, now: float) -> list[str]:
        rows = db.execute("SELECT DISTINCT substr(waiting_on, 8) FROM flows WHERE status = 'SUSPENDED' "
                          "AND waiting_on LIKE 'signal:%' AND substr(waiting_on, 8) NOT IN (SELECT name FROM signals) "
                          "ORDER BY 1 LIMIT ?", (c.limit,))
        return [r[0] for r in rows]

    def _GetFlow(self, db: sqlite3.Connection, c: GetFlow, now: float) -> FlowRecord | None:
        return self._get(db, c.flow_id)

    def _LoadSteps(self, db: sqlite3.Connection, c: LoadSteps, now: float) -> list[StepRecord]:
        rows = db.execute(f"SELECT {_STEP_COLUMNS} FROM steps WHERE flow_id = ? ORDER BY position", (c.flow_id,))
        return [_step(r) for r in rows]

    def _ListFlows(self, db: sqlite3.Connection, c: ListFlows, now: float) -> list[FlowRecord]:
        where, params = ("WHERE status = ?", (c.status,)) if c.status is not None else ("", ())
        rows = db.execute(f"SELECT {_FLOW_COLUMNS} FROM flows {where} ORDER BY created_at LIMIT ?",
                          (*params, c.limit))
        return [_flow(r) for r in rows]

    def _NextDue(self, db: sqlite3.Connection, c: NextDue, now: float) -> float | None:
        params = {f"t{i}": name for i, name in enumerate(c.flow_types or ())}
        due = db.execute(_next_due(None if c.flow_types is None else len(c.flow_types)), params).fetchone()[0]
        queued = self._queued_next_due(db)
        times = [float(t) for t in (due, queued) if t is not None]
        return min(times, default=None)

    def _CountFlows(self, db: sqlite3.Connection, c: CountFlows, now: float) -> dict[str, int]:
        # the counts by status are kept by triggers on flows (sqlite_schema): no scan of the flows
        counts = dict(db.execute("SELECT status, n FROM flow_counts WHERE n > 0").fetchall())
        limit = -1 if c.limit is None else c.limit
        if c.limit is not None:
            counts = {status: min(n, c.limit) for status, n in counts.items()}
        # due: walks the due entries of the default queue's claim indexes (unsorted), stopping at limit
        due = db.execute(_DUE_COUNT, {"now": now, "n": limit}).fetchone()[0]
        due += self._queued_due(db, now, limit)
        counts["due"] = due if c.limit is None else min(c.limit, due)
        n = db.execute("SELECT count(*) FROM (SELECT 1 FROM flows WHERE quarantined = 1 LIMIT ?)",
                       (limit,)).fetchone()[0]
        if n:
            counts["quarantined"] = n
        return counts
