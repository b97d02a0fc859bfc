"""Redis store (redis.asyncio): a batch of commands as one Lua script call, in one round trip.

Every check-and-write runs inside one Lua script, which Redis runs atomically: the script runs
each command's body in turn and answers each in its place. Times come from the Redis server's
clock (TIME inside the script), the one clock all hosts sharing the Redis agree on. The key layout
and the durability settings Redis needs are in docs/redis.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (ClusterDownError, MasterDownError, NoScriptError, OutOfMemoryError,
                              ReadOnlyError, RedisError, ResponseError, TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core import Failure, FlowRecord, StepRecord
from ..core.queues import QueueLimits, QueueState
from ..errors import (ConfigError, FencedError, FlowBusyError, FlowCancelledError, FlowNotFoundError,
                      FlowStateError, ScheduleNotFoundError, StoreError, StoreUnavailableError)
from .base import LogBase
from .commands import (AppendStep, AwaitSignal, CancelFlow, Claim, ClaimFlows, Command, CountFlows, DeclareQueue,
                       FinishFlow, FlowPage, ForkFlow, GetFlow, InvokeChild, ListFlows, LoadHistory, LoadSteps,
                       MigrateFlows, NextDue, PutRecord, QueryFlows, QueueStats, RecordCrash, ReleaseWorker,
                       RenewLeases, ResetStore, RetryFlow, ScanRecords, Scheduled, ScheduleFlow, SendSignal,
                       SuspendFlow, WaitingSignals)
from .crashes import JITTER, SPLIT, check, poison_failure
from .events import FlowEvent, dumps, finish_event, scheduled_event, step_event, suspend_event
from .records import dump_failure, load_crashes, load_failure
from .redis_pipe import OrderedConnection
from .redis_scripts import SCRIPTS, batch_script
from .redis_upkeep import SCHEDULE_PRELUDE, UPKEEP_SCRIPTS, RedisUpkeep
from .rules import check_migration, invalid

__all__ = ["RedisExecutionLog"]

# Error replies after which the same batch may succeed later: Redis is unavailable, not broken
# (loading its data, a replica, out of memory, cannot write its AOF or RDB, busy in a script).
# redis-py gives some codes classes of their own and drops the code from their message.
_TRANSIENT = ("LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "BUSY", "OOM", "NOREPLICAS",
              "CLUSTERDOWN", "NOSCRIPT", "MISCONF")
_TRANSIENT_REPLIES = (ReadOnlyError, OutOfMemoryError, TryAgainError, MasterDownError, ClusterDownError,
                      NoScriptError)
_HEADER = msgpack.Packer()  # writes the array header before a batch's packed commands


def _server_text(exc: BaseException) -> str:
    """What Redis said, with the code redis-py took off the message of the classes it has for some codes."""
    text = str(exc)
    code = getattr(exc, "status_code", None)
    return f"{code} {text}" if code and not text.startswith(code) else text


def _transient(exc: BaseException) -> bool:
    """True for a failure of Redis itself (down, slow, loading, busy, full), not of a command."""
    if not isinstance(exc, ResponseError) or isinstance(exc, _TRANSIENT_REPLIES):
        return True  # connection refused or lost, timeout, LOADING, a protocol error
    return _server_text(exc).split(" ", 1)[0].upper() in _TRANSIENT


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


_POISON = b"!poison"


def _failure(value: bytes | None, flow_id: str = "") -> Failure | None:
    """An error field: storage.records bytes, or a marker a script wrote: the cancel script's, or
    the crash script's for a quarantined flow (its id and crashes, from which its failure is
    built here, where the message can be written)."""
    if value is None:
        return None
    if value == b"!cancelled":
        return Failure.cancelled(flow_id)
    if value.startswith(_POISON):
        poisoned, crashes = msgpack.unpackb(value[len(_POISON):], raw=True)
        return poison_failure(poisoned.decode(), load_crashes(crashes))
    return load_failure(value)


def _number(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _unpack(reply: bytes) -> list[Any]:
    """A reply packed by cmsgpack in Lua: strings arrive as bytes (an empty table may be a map)."""
    return list(msgpack.unpackb(reply, raw=True) or ())


def _flow(fields: list[bytes] | None) -> FlowRecord | None:
    """A flow from its hash, as the flat [field, value, ...] list HGETALL gives; None for no hash."""
    return _record(fields) if fields else None


def _record(fields: list[bytes]) -> FlowRecord:
    h = dict(zip(fields[::2], fields[1::2], strict=True))
    g = h.get  # the fields a flow may lack
    flow_id = h[b"flow_id"].decode()
    return FlowRecord(
        flow_id, h[b"flow_type"].decode(), h[b"args"], h[b"status"].decode(), _text(g(b"version")),
        int(h[b"attempt"]), int(h[b"epoch"]), _text(g(b"owner")), _number(g(b"lease_expires")),
        _number(g(b"ready_at")), g(b"result"), _failure(g(b"error"), flow_id), _text(g(b"parent_id")),
        float(h[b"created_at"]), float(h[b"updated_at"]), _text(g(b"waiting_on")),
        g(b"cancel_requested") is not None, load_crashes(g(b"crashes")), int(g(b"suspect") or 0))


def _step(packed: bytes | None) -> StepRecord | None:
    return None if packed is None else _load_step(packed)


def _load_step(packed: bytes) -> StepRecord:
    """A journaled step: msgpack [base, status, result|false, error|false, completed_at]."""
    base, status, result, error, completed_at = msgpack.unpackb(packed, raw=True)
    position, name, args_hash, attempt, tries, retry_at = msgpack.unpackb(base)
    return StepRecord(position, name, args_hash, status.decode(), None if result is False else result,
                      None if error is False else _failure(error), attempt, float(completed_at), tries, retry_at)


def _events(entries: list[bytes], after: int) -> list[FlowEvent]:
    """A flow's events from its list entries: msgpack [at, kind, details as JSON]."""
    events = []
    for seq, entry in enumerate(entries, after + 1):
        at, kind, data = msgpack.unpackb(entry, raw=False, unicode_errors="replace")
        events.append(FlowEvent(seq, float(at), kind, data))
    return events


def _steps(values: list[bytes]) -> list[StepRecord]:
    return sorted((_load_step(v) for v in values), key=lambda s: s.position)


def _step_fields(flow_id: str, epoch: int, s: StepRecord) -> list[Any]:
    base = msgpack.packb([s.position, s.name, s.args_hash, s.attempt, s.tries, s.retry_at])
    return [flow_id, epoch, s.position, base, str(s.status), s.result,
            None if s.error is None else dump_failure(s.error)]


def _queue_state(row: list[Any]) -> QueueState:
    """A queue's figures as the QueueStats script packs them (its limits packed as DeclareQueue stored them)."""
    name, raw, due, running, waiting, starts = row
    limits = None
    if raw is not False:
        *counts, period = msgpack.unpackb(raw)
        concurrency, per_worker, per_key, rate = (None if v is False else v for v in counts)
        limits = QueueLimits(name.decode(), concurrency, per_worker, per_key, rate, float(period))
    return QueueState(name.decode(), limits, due, running, waiting, starts)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in user:
        return url
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


Plan = tuple[bytes | None, Callable[[Any], object]]  # (the command packed for the script or None, reply decoder)


class RedisExecutionLog(RedisUpkeep, LogBase):
    """A store in one Redis database (standalone or a primary with replicas; not Redis Cluster).

    Args:
        url: redis://[:password@]host:port/db (or rediss:// for TLS).
        prefix: the first part of every key, so several stores can share one database.
        timeout: seconds to wait for a connection or a reply before StoreUnavailableError.
        query_budget: flows one QueryFlows call examines at most (Redis serves nobody else while
            a script runs); a query that needs more returns a short page and a cursor.
    """

    pipelined = True

    def __init__(self, url: str, *, prefix: str = "ergon", timeout: float = 10.0,
                 query_budget: int = 5000) -> None:
        parts, db = urlsplit(url), urlsplit(url).path.strip("/")
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        db_ok = db == "" or db.isdigit()
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or not port_ok or not db_ok:
            raise ConfigError(f"Redis URL {_redact(url)!r}: write redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0")
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.query_budget = query_budget
        self._client: aioredis.Redis | None = None
        self._pipe: OrderedConnection | None = None
        self._batch: Any = None

    async def connect(self) -> RedisExecutionLog:
        """Connect, check Redis answers and load the scripts.

        Raises:
            ConfigError: the URL does not parse.
            StoreUnavailableError: Redis cannot be reached (the message names the URL).
        """
        if self._client is not None:
            return self
        try:
            client = aioredis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                             socket_connect_timeout=self.timeout,
                                             retry=Retry(NoBackoff(), 1))
        except ValueError as exc:
            raise ConfigError(f"Redis URL {_redact(self.url)!r}: {exc}") from None
        self._batch = client.register_script(batch_script(SCHEDULE_PRELUDE, {**SCRIPTS, **UPKEEP_SCRIPTS}))
        pipe = OrderedConnection(client)
        try:
            await client.ping()
            await self._load_scripts(pipe)
            (indexed,) = await self._call(pipe, [self._script("IndexAll", [])])
            if isinstance(indexed, Exception):
                raise indexed
        except RedisError as exc:
            await pipe.close()
            await client.aclose()
            raise self._unavailable(exc) from exc
        self._client, self._pipe = client, pipe
        return self

    async def close(self) -> None:
        client, pipe, self._client, self._pipe = self._client, self._pipe, None, None
        if pipe is not None:
            await pipe.close()
        if client is not None:
            await client.aclose()

    async def _load_scripts(self, pipe: OrderedConnection) -> None:
        # on the batches' connection: a batch sent after this finds the script
        await pipe.call("SCRIPT", "LOAD", self._batch.script)

    async def _call(self, pipe: OrderedConnection, packed: list[bytes]) -> list[object]:
        """One call of the batch script with the packed commands: one reply (or error) per command.

        Every batch goes on one connection, so Redis applies batches sent while others are under
        way in the order they were sent. A call that broke on its connection is made once more
        on a fresh one (after a Redis restart, the old connection breaks at its first use).
        """
        batch = _HEADER.pack_array_header(2 * len(packed)) + b"".join(packed)
        args = ("EVALSHA", self._batch.sha, 0, self.prefix, batch, len(packed))
        try:
            replies = await pipe.call(*args)
        except (RedisConnectionError, RedisTimeoutError):
            replies = await pipe.call(*args)
        return cast(list[object], replies)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({_redact(self.url)!r}, prefix={self.prefix!r}, "
                f"connected={self._client is not None})")

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"Redis at {_redact(self.url)} is unavailable: {_server_text(exc)}")

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        """Apply the commands in order as one script call (atomic: no other client's command runs between them).

        Raises:
            StoreUnavailableError: Redis is down, slow past `timeout`, loading, busy or out of
                memory or disk; some commands may have been applied, and sending the same ones
                again is safe.
            StoreError: not connected, or Redis failed the transaction for another reason.
        """
        pipe = self._pipe
        if pipe is None:
            raise StoreError("store is not connected: await store.connect() first")
        plans = [self._plan(c) for c in commands]
        replies = await self._transaction(pipe, [p[0] for p in plans if p[0] is not None])
        results: list[object] = []
        queue = iter(replies)
        for command, (redis_command, decode) in zip(commands, plans, strict=True):
            reply = next(queue) if redis_command is not None else None
            try:
                results.append(self._refusal(command, reply) if isinstance(reply, Exception) else decode(reply))
            except StoreUnavailableError:
                raise
            except Exception as exc:  # a reply this command's content made undecodable
                results.append(invalid(command, exc))
        return results

    def _plan(self, command: Command) -> Plan:
        try:
            plan: Plan = getattr(self, "_" + type(command).__name__)(command)
            return plan
        except Exception as exc:  # the command's own content cannot be sent: only it fails
            error = invalid(command, exc)
            return None, lambda r: error

    async def _transaction(self, pipe: OrderedConnection, packed: list[bytes]) -> list[object]:
        """Run the packed commands as one script call in one round trip, loading the script again if needed."""
        if not packed:
            return []
        try:
            try:
                return await self._call(pipe, packed)
            except NoScriptError:
                await self._load_scripts(pipe)  # Redis restarted: its script cache is empty
                return await self._call(pipe, packed)
        except (RedisError, OSError) as exc:
            if _transient(exc):  # NOSCRIPT again counts as such
                raise self._unavailable(exc) from exc
            raise StoreError(f"Redis at {_redact(self.url)} failed a batch: {_server_text(exc)}") from exc

    def _refusal(self, command: Command, exc: Exception) -> Exception:
        """The refusal or error a script's error reply stands for (raised if Redis itself failed).

        A script checks before it writes, so an error reply about the command's content means
        nothing of that command was applied; the other commands of the batch were.
        """
        if _transient(exc):
            raise self._unavailable(exc)
        code, _, reason = str(exc).partition(" ")
        # only the scripts of commands naming a flow (and for a fence, an epoch) send these codes
        flow_id = cast(str, getattr(command, "flow_id", None))
        if code == "ERGON_FENCED":
            return FencedError(flow_id, cast(int, getattr(command, "epoch", None)), reason)
        if code == "ERGON_NOTFOUND":
            return FlowNotFoundError(flow_id)
        if code == "ERGON_BUSY":
            return FlowBusyError(flow_id)
        if code == "ERGON_CANCELLED":
            return FlowCancelledError(flow_id)
        if code == "ERGON_STATE":
            return FlowStateError(flow_id, reason, "retry")
        if code == "ERGON_NOSCHEDULE":
            return ScheduleNotFoundError(cast(str, getattr(command, "name", None)))
        return invalid(command, exc)

    def _script(self, name: str, fields: list[Any]) -> bytes:
        """The command as the batch script reads it: its body's name, then its fields (a msgpack array)."""
        return msgpack.packb(name) + msgpack.packb(fields, use_bin_type=False)

    # -- one plan per command: (the command packed for the batch script, how to decode its reply) --

    def _ScheduleFlow(self, c: ScheduleFlow) -> Plan:
        fields = [c.flow_id, c.flow_type, c.args, c.version, c.ready_at, c.parent_id,
                  dumps(scheduled_event(c.flow_type, c.parent_id, c.ready_at)[1]),
                  [c.queue, c.priority, c.key, c.dedup_id]]
        return self._script("ScheduleFlow", fields), lambda r: (Scheduled(r.decode(), False) if isinstance(r, bytes)
                                                                else Scheduled(c.flow_id, r == 1))

    def _ClaimFlows(self, c: ClaimFlows) -> Plan:
        fields = [c.worker_id, c.request_id, c.limit, c.lease_seconds, c.flow_types, c.flow_id, c.steal, c.solo,
                  c.version]
        return (self._script("ClaimFlows", fields),
                lambda r: [Claim(_record(flow), tuple(_steps(steps))) for flow, steps in _unpack(r)])

    def _RenewLeases(self, c: RenewLeases) -> Plan:
        return self._script("RenewLeases", [c.worker_id, c.lease_seconds, c.flow_ids]), int

    def _ReleaseWorker(self, c: ReleaseWorker) -> Plan:
        return self._script("ReleaseWorker", [c.worker_id]), int

    def _RecordCrash(self, c: RecordCrash) -> Plan:
        check(c)
        fields = [c.worker_id, c.exit_code, c.signal, c.cause, c.max_crashes, JITTER, SPLIT]
        return self._script("RecordCrash", fields), lambda r: [_flow(h) for h in _unpack(r)]

    def _AppendStep(self, c: AppendStep) -> Plan:
        kind, details = step_event(c.step)
        fields = [*_step_fields(c.flow_id, c.epoch, c.step), kind, dumps(details)]
        return self._script("AppendStep", fields), lambda r: None

    def _FinishFlow(self, c: FinishFlow) -> Plan:
        error = None if c.error is None else dump_failure(c.error)
        kind, details = finish_event(c.status, c.error)
        fields = [c.flow_id, c.epoch, str(c.status), c.result, error, kind, dumps(details)]
        return self._script("FinishFlow", fields), lambda r: None

    def _SuspendFlow(self, c: SuspendFlow) -> Plan:
        error = None if c.error is None else dump_failure(c.error)
        kind, details = suspend_event(c.ready_at, c.waiting_on, c.attempt, c.error)
        fields = [c.flow_id, c.epoch, c.ready_at, c.attempt, error, c.waiting_on, kind, dumps(details)]
        return self._script("SuspendFlow", fields), lambda r: None

    def _AwaitSignal(self, c: AwaitSignal) -> Plan:
        fields = [*_step_fields(c.flow_id, c.epoch, c.step), c.signal, c.ready_at,
                  dumps({"name": c.signal, "until": c.ready_at})]
        return self._script("AwaitSignal", fields), _step

    def _SendSignal(self, c: SendSignal) -> Plan:
        return self._script("SendSignal", [c.name, c.payload]), lambda r: r == 1

    def _InvokeChild(self, c: InvokeChild) -> Plan:
        child = c.child
        fields = [*_step_fields(c.flow_id, c.epoch, c.step),
                  child.flow_id, child.flow_type, child.args, child.version, child.ready_at,
                  dump_failure(Failure.cancelled(child.flow_id)),
                  dumps(scheduled_event(child.flow_type, c.flow_id, child.ready_at)[1]), c.ready_at,
                  [child.queue, child.priority, child.key]]
        return self._script("InvokeChild", fields), _step

    def _DeclareQueue(self, c: DeclareQueue) -> Plan:
        q = c.limits
        fields = [q.name, q.concurrency, q.worker_concurrency, q.key_concurrency, q.rate_limit, q.rate_period,
                  c.replace]
        return self._script("DeclareQueue", fields), lambda r: r == 1

    def _QueueStats(self, c: QueueStats) -> Plan:
        if c.limit <= 0:
            return None, lambda r: []
        return self._script("QueueStats", [c.limit]), lambda r: [_queue_state(row) for row in _unpack(r)]

    def _CancelFlow(self, c: CancelFlow) -> Plan:
        return self._script("CancelFlow", [c.flow_id]), lambda r: r.decode()

    def _WaitingSignals(self, c: WaitingSignals) -> Plan:
        if c.limit <= 0:
            return None, lambda r: []
        return self._script("WaitingSignals", [c.limit]), lambda r: [name.decode() for name in r]

    def _GetFlow(self, c: GetFlow) -> Plan:
        return self._script("GetFlow", [c.flow_id]), lambda r: r and _flow(_unpack(r))

    def _QueryFlows(self, c: QueryFlows) -> Plan:
        if c.limit <= 0:
            return None, lambda r: FlowPage(())
        fields = [None if c.statuses is None else [str(s) for s in c.statuses], c.flow_types, c.created_after,
                  c.created_before, c.id_contains, c.error_contains, c.newest_first, c.limit,
                  None if c.cursor is None else int(c.cursor), self.query_budget]

        def decode(reply: bytes) -> FlowPage:
            hashes, cursor = _unpack(reply)
            flows = tuple(flow for flow in (_flow(h) for h in hashes or ()) if flow is not None)
            return FlowPage(flows, cursor.decode() if cursor else None)

        return self._script("QueryFlows", fields), decode

    def _RetryFlow(self, c: RetryFlow) -> Plan:
        return self._script("RetryFlow", [c.flow_id]), lambda r: None

    def _ForkFlow(self, c: ForkFlow) -> Plan:
        fields = [c.flow_id, c.new_flow_id, c.from_position]
        return self._script("ForkFlow", fields), lambda r: Scheduled(c.new_flow_id, r == 1)

    def _MigrateFlows(self, c: MigrateFlows) -> Plan:
        check_migration(c)
        return self._script("MigrateFlows", [c.to_version, c.from_version, c.flow_ids]), int

    def _LoadHistory(self, c: LoadHistory) -> Plan:
        after = max(c.after, 0)
        return self._script("LoadHistory", [c.flow_id, after, c.limit]), lambda r: _events(_unpack(r), after)

    def _LoadSteps(self, c: LoadSteps) -> Plan:
        return self._script("LoadSteps", [c.flow_id]), lambda r: _steps(_unpack(r))

    def _ListFlows(self, c: ListFlows) -> Plan:
        if c.limit <= 0:
            return None, lambda r: []
        fields = [None if c.status is None else str(c.status), c.limit]
        return self._script("ListFlows", fields), lambda r: [_flow(h) for h in _unpack(r)]

    def _NextDue(self, c: NextDue) -> Plan:
        return self._script("NextDue", [c.flow_types]), lambda r: None if r is None else float(r)

    def _CountFlows(self, c: CountFlows) -> Plan:
        limit = c.limit
        cap: Callable[[int], int] = (lambda n: n) if limit is None else (lambda n: min(n, limit))
        return self._script("CountFlows", []), lambda r: {r[i].decode(): cap(int(r[i + 1]))
                                                          for i in range(0, len(r), 2)}

    def _PutRecord(self, c: PutRecord) -> Plan:
        return self._script("PutRecord", [c.key, c.value, c.check, c.expected]), lambda r: r == 1

    def _ScanRecords(self, c: ScanRecords) -> Plan:
        return self._script("ScanRecords", [c.prefix]), lambda r: [[k.decode(), v] for k, v in _unpack(r)]

    def _ResetStore(self, c: ResetStore) -> Plan:
        return self._script("ResetStore", []), lambda r: None
