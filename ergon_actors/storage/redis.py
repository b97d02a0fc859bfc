"""Redis store (redis.asyncio): one Lua script per command, a batch as one MULTI/EXEC round trip.

Every check-and-write runs inside a Lua script, which Redis runs atomically; a batch of commands
is one MULTI/EXEC transaction sent in one round trip. Times come from the Redis server's clock
(TIME inside the scripts), the one clock all hosts sharing the Redis agree on. The key layout
and the durability settings Redis needs are in docs/redis.md.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (ClusterDownError, MasterDownError, NoScriptError, OutOfMemoryError,
                              ReadOnlyError, RedisError, ResponseError, TryAgainError)

from ..core import Failure, FlowRecord, StepRecord
from ..errors import (ConfigError, FencedError, FlowBusyError, FlowCancelledError,
                      FlowNotFoundError, StoreError, StoreUnavailableError)
from ..wire import (AppendStep, AwaitSignal, CancelFlow, Claim, ClaimFlows, Command, CountFlows,
                    FinishFlow, GetFlow, InvokeChild, ListFlows, LoadSteps, ReleaseWorker,
                    RenewLeases, Scheduled, ScheduleFlow, SendSignal, SuspendFlow, WaitingSignals,
                    dumps, loads)
from .base import LogBase
from .rules import invalid

__all__ = ["RedisExecutionLog"]

# Shared by every script. ARGV[1] is the key prefix, ARGV[2] the command's fields (msgpack array).
# A flow is a Lua table of its hash fields (strings; numbers when just computed; nil when None);
# save() writes the changed fields and keeps every index in step with the flow's state.
_PRELUDE = r"""
local P = ARGV[1]
local C = cmsgpack.unpack(ARGV[2])
local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000
local CANCELLED = '!cancelled'  -- error field of a cancelled flow: the standard cancellation failure
local TERMINAL = {COMPLETE = true, FAILED = true, CANCELLED = true}
local STATUSES = {'PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETE', 'FAILED', 'CANCELLED'}
local FIELDS = {'flow_id', 'flow_type', 'args', 'status', 'version', 'attempt', 'epoch', 'owner',
  'lease_expires', 'ready_at', 'result', 'error', 'parent_id', 'created_at', 'updated_at',
  'waiting_on', 'cancel_requested', 'seq'}
local function k(kind, name) return P .. ':' .. kind .. ':' .. name end
local function get(id)
  local raw = redis.call('HGETALL', k('flow', id))
  if #raw == 0 then return nil end
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end
local function copy(f) local c = {} for n, v in pairs(f) do c[n] = v end return c end
local function signal_of(f)
  if f and f.status == 'SUSPENDED' and f.waiting_on and string.sub(f.waiting_on, 1, 7) == 'signal:' then
    return string.sub(f.waiting_on, 8)
  end
end
local function queued(f)  -- in its type's ready set: waiting for ready_at
  return f and (f.status == 'PENDING' or f.status == 'SUSPENDED') and f.ready_at ~= nil
end
local function save(f, old)  -- write flow f (old: its stored state, nil if new) and its indexes
  local id, sets, dels = f.flow_id, {}, {}
  for _, n in ipairs(FIELDS) do
    local v = f[n]
    if v == nil then
      if old and old[n] ~= nil then dels[#dels + 1] = n end
    elseif old == nil or type(v) == 'number' or old[n] ~= v then
      sets[#sets + 1] = n; sets[#sets + 1] = v
    end
  end
  if #dels > 0 then redis.call('HDEL', k('flow', id), unpack(dels)) end
  if #sets > 0 then redis.call('HSET', k('flow', id), unpack(sets)) end
  if old == nil or old.status ~= f.status then
    if old then redis.call('ZREM', k('status', old.status), id) end
    redis.call('ZADD', k('status', f.status), f.seq, id)
  end
  if queued(f) then
    if not queued(old) or old.ready_at ~= f.ready_at then redis.call('ZADD', k('ready', f.flow_type), f.ready_at, id) end
  elseif queued(old) then redis.call('ZREM', k('ready', f.flow_type), id) end
  if f.status == 'RUNNING' then
    if not old or old.lease_expires ~= f.lease_expires then redis.call('ZADD', k('leases', f.flow_type), f.lease_expires, id) end
  elseif old and old.status == 'RUNNING' then redis.call('ZREM', k('leases', f.flow_type), id) end
  if old and old.owner and old.owner ~= f.owner then redis.call('SREM', k('owned', old.owner), id) end
  if f.owner and f.owner ~= (old and old.owner) then redis.call('SADD', k('owned', f.owner), id) end
  local was, now = signal_of(old), signal_of(f)
  if was ~= now then
    if was then
      redis.call('SREM', k('waiting', was), id)
      if redis.call('SCARD', k('waiting', was)) == 0 then redis.call('ZREM', P .. ':waitnames', was) end
    end
    if now then
      redis.call('SADD', k('waiting', now), id)
      if redis.call('HEXISTS', P .. ':signals', now) == 0 then redis.call('ZADD', P .. ':waitnames', 0, now) end
    end
  end
end
local function fence(f, epoch, cancelling)
  if f == nil then return 'ERGON_NOTFOUND' end
  if tonumber(f.epoch) ~= epoch then return 'ERGON_FENCED flow is at epoch ' .. f.epoch end
  if f.status ~= 'RUNNING' then return 'ERGON_FENCED flow is ' .. f.status end
  if f.cancel_requested and not cancelling then return 'ERGON_CANCELLED' end
end
local function recorded(f, epoch, pos)  -- the step this epoch already journaled at pos (a re-send)
  if f == nil or tonumber(f.epoch) ~= epoch then return false end
  return redis.call('HGET', k('steps', f.flow_id), pos)
end
local function step(base, status, result, err)
  return cmsgpack.pack({base, status, result or false, err or false, NOW})
end
local function wake(id, on)
  local f = get(id)
  if f and f.status == 'SUSPENDED' and f.waiting_on == on then
    local new = copy(f); new.ready_at = NOW; save(new, f)
  end
end
local function schedule(id, flow_type, args, version, ready_at, parent)
  if redis.call('EXISTS', k('flow', id)) == 1 then return 0 end
  local seq = redis.call('INCR', P .. ':seq')
  save({flow_id = id, flow_type = flow_type, args = args, status = 'PENDING', version = version,
        attempt = 1, epoch = 0, ready_at = ready_at or NOW, parent_id = parent, created_at = NOW,
        updated_at = NOW, seq = seq}, nil)
  redis.call('SADD', P .. ':types', flow_type)
  if parent then redis.call('SADD', k('children', parent), id) end
  return 1
end
local function finish(id, epoch, status, changes)  -- false in changes: set to None
  local f = get(id)
  local refused = fence(f, epoch, status == 'CANCELLED')
  if refused then
    if f and tonumber(f.epoch) == epoch and f.status == status then return nil end  -- a re-send
    return refused
  end
  local new = copy(f)
  new.status, new.owner, new.lease_expires, new.updated_at = status, nil, nil, NOW
  for n, v in pairs(changes) do if v == false then new[n] = nil else new[n] = v end end
  save(new, f)
  if TERMINAL[status] and new.parent_id then wake(new.parent_id, 'child:' .. id) end
end
"""

_SCRIPTS = {
    # ScheduleFlow {id, type, args, version, ready_at, parent}: create unless it exists -> 1/0.
    "ScheduleFlow": "return schedule(C[1], C[2], C[3], C[4], C[5], C[6])",
    # ClaimFlows {worker, request, limit, lease, types, flow_id, steal}: lease runnable flows,
    # earliest due first, walking only the due head of each type's ready/lease sorted set.
    "ClaimFlows": r"""
local worker, request, limit, lease, types, only, steal = C[1], C[2], C[3], C[4], C[5], C[6], C[7]
local last, ids = k('lastclaim', worker), {}
if redis.call('HGET', last, 'request') == request then  -- a re-send: answer the first claim again
  for _, id in ipairs(cmsgpack.unpack(redis.call('HGET', last, 'ids'))) do
    local f = get(id)
    if f and f.owner == worker and f.status == 'RUNNING' then ids[#ids + 1] = id end
  end
else
  if only then
    local f = get(only)
    if not f then return redis.error_reply('ERGON_NOTFOUND') end
    if f.status == 'RUNNING' and tonumber(f.lease_expires) > NOW and not steal then
      return redis.error_reply('ERGON_BUSY')
    end
    if not TERMINAL[f.status] then ids = {only} end
  elseif limit > 0 then
    local seen, found = {}, {}
    for _, t in ipairs(types or redis.call('SMEMBERS', P .. ':types')) do
      if not seen[t] then
        seen[t] = true
        for _, index in ipairs({'leases', 'ready'}) do
          local r = redis.call('ZRANGEBYSCORE', k(index, t), '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, limit)
          for i = 1, #r, 2 do found[#found + 1] = {r[i], tonumber(r[i + 1])} end
        end
      end
    end
    table.sort(found, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
    for i = 1, math.min(limit, #found) do ids[i] = found[i][1] end
  end
  for _, id in ipairs(ids) do
    local f = get(id)
    local new = copy(f)
    new.status, new.epoch, new.owner = 'RUNNING', tonumber(f.epoch) + 1, worker
    new.lease_expires, new.waiting_on, new.updated_at = NOW + lease, nil, NOW
    save(new, f)
  end
  redis.call('HSET', last, 'request', request, 'ids', cmsgpack.pack(ids))
  redis.call('EXPIRE', last, 86400)
end
local out = {}
for i, id in ipairs(ids) do
  local flow = redis.call('HGETALL', k('flow', id))
  out[i] = {flow, redis.call('HVALS', k('steps', id))}
end
return cmsgpack.pack(out)""",
    # RenewLeases {worker, lease, flow_ids}: extend the worker's RUNNING leases -> count.
    "RenewLeases": r"""
local seen, n = {}, 0
for _, id in ipairs(C[3] or redis.call('SMEMBERS', k('owned', C[1]))) do
  local f = not seen[id] and get(id)
  seen[id] = true
  if f and f.owner == C[1] and f.status == 'RUNNING' then
    local new = copy(f); new.lease_expires = NOW + C[2]; save(new, f); n = n + 1
  end
end
return n""",
    # ReleaseWorker {worker}: its RUNNING flows back to PENDING, due now -> count.
    "ReleaseWorker": r"""
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', k('owned', C[1]))) do
  local f = get(id)
  if f and f.owner == C[1] and f.status == 'RUNNING' then
    local new = copy(f)
    new.status, new.owner, new.lease_expires, new.ready_at, new.updated_at = 'PENDING', nil, nil, NOW, NOW
    save(new, f); n = n + 1
  end
end
return n""",
    # AppendStep {id, epoch, pos, base, status, result, error}: journal a step; a COMPLETE step
    # is never overwritten (re-sent by its epoch: a no-op even after the flow ended).
    "AppendStep": r"""
local f = get(C[1])
local done = f and redis.call('HGET', k('steps', C[1]), C[3])
local complete = done and cmsgpack.unpack(done)[2] == 'COMPLETE'
if complete and tonumber(f.epoch) == C[2] then return false end
local refused = fence(f, C[2], false)
if refused then return redis.error_reply(refused) end
if not complete then redis.call('HSET', k('steps', C[1]), C[3], step(C[4], C[5], C[6], C[7])) end
return false""",
    # FinishFlow {id, epoch, status, result, error}: end the flow; wakes a parent waiting on it.
    "FinishFlow": r"""
local refused = finish(C[1], C[2], C[3], {result = C[4] or false, error = C[5] or false,
                                         ready_at = false, waiting_on = false})
if refused then return redis.error_reply(refused) end
return false""",
    # SuspendFlow {id, epoch, ready_at, attempt, error}: park until ready_at (nil: until woken).
    "SuspendFlow": r"""
local changes = {ready_at = C[3] or false, waiting_on = false}
if C[4] then changes.attempt = C[4] end
if C[5] then changes.error = C[5] end
local refused = finish(C[1], C[2], 'SUSPENDED', changes)
if refused then return redis.error_reply(refused) end
return false""",
    # AwaitSignal {id, epoch, pos, base, status, result, error, signal, ready_at}: take the
    # signal once (-> the journaled step) or suspend waiting for it (-> nil).
    "AwaitSignal": r"""
local id, epoch, pos, name = C[1], C[2], C[3], C[8]
local f = get(id)
local done = recorded(f, epoch, pos)
if done then return done end
local refused = fence(f, epoch, false)
if refused then return redis.error_reply(refused) end
local payload = redis.call('HGET', P .. ':signals', name)
if payload and redis.call('HSETNX', P .. ':consumed', name, id) == 1 then
  local s = step(C[4], 'COMPLETE', payload, C[7])
  redis.call('HSET', k('steps', id), pos, s)
  return s
end
finish(id, epoch, 'SUSPENDED', {ready_at = C[9] or false, waiting_on = 'signal:' .. name})
return false""",
    # SendSignal {name, payload}: store it unless sent before (-> 0) and wake its waiters (-> 1).
    "SendSignal": r"""
if redis.call('HSETNX', P .. ':signals', C[1], C[2]) == 0 then return 0 end
redis.call('ZREM', P .. ':waitnames', C[1])
for _, id in ipairs(redis.call('SMEMBERS', k('waiting', C[1]))) do wake(id, 'signal:' .. C[1]) end
return 1""",
    # InvokeChild {id, epoch, pos, base, status, result, error, child id, type, args, version,
    # ready_at, its cancellation failure}: schedule the child, then journal its outcome if it
    # has ended (-> the step) or suspend the parent until it ends (-> nil).
    "InvokeChild": r"""
local id, epoch, pos, child = C[1], C[2], C[3], C[8]
local f = get(id)
local done = recorded(f, epoch, pos)
if done then return done end
local refused = fence(f, epoch, false)
if refused then return redis.error_reply(refused) end
schedule(child, C[9], C[10], C[11], C[12], id)
local c = get(child)
if TERMINAL[c.status] then
  local s
  if c.status == 'COMPLETE' then s = step(C[4], 'COMPLETE', c.result, C[7])
  else
    local err = c.error
    if not err or err == CANCELLED then err = C[13] end
    s = step(C[4], 'FAILED', C[6], err)
  end
  redis.call('HSET', k('steps', id), pos, s)
  return s
end
finish(id, epoch, 'SUSPENDED', {ready_at = false, waiting_on = 'child:' .. child})
return false""",
    # CancelFlow {id}: cancel the flow (RUNNING: request it) and, recursively, its live
    # children; a child that ends wakes its waiting parent -> the flow's status.
    "CancelFlow": r"""
local function cancel(id)
  local f = get(id)
  if not f then return nil end
  if TERMINAL[f.status] then return f.status end
  local new = copy(f)
  new.updated_at = NOW
  if f.status == 'RUNNING' then new.cancel_requested = '1'
  else new.status, new.ready_at, new.waiting_on, new.error = 'CANCELLED', nil, nil, CANCELLED end
  save(new, f)
  if new.status == 'CANCELLED' and f.parent_id then wake(f.parent_id, 'child:' .. id) end
  for _, c in ipairs(redis.call('SMEMBERS', k('children', id))) do cancel(c) end
  return new.status
end
return cancel(C[1]) or redis.error_reply('ERGON_NOTFOUND')""",
    # GetFlow {id}: -> its hash, packed (one reply element instead of one per field), or nil.
    "GetFlow": r"""
local raw = redis.call('HGETALL', k('flow', C[1]))
return #raw > 0 and cmsgpack.pack(raw)""",
    # LoadSteps {id}: -> its packed steps, packed.
    "LoadSteps": "return cmsgpack.pack(redis.call('HVALS', k('steps', C[1])))",
    # ListFlows {status, limit}: flows oldest first (schedule order) -> their hashes, packed.
    "ListFlows": r"""
local found = {}
for _, s in ipairs(C[1] and {C[1]} or STATUSES) do
  local r = redis.call('ZRANGE', k('status', s), 0, C[2] - 1, 'WITHSCORES')
  for i = 1, #r, 2 do found[#found + 1] = {r[i], tonumber(r[i + 1])} end
end
table.sort(found, function(a, b) return a[2] < b[2] end)
local out = {}
for i = 1, math.min(C[2], #found) do out[i] = redis.call('HGETALL', k('flow', found[i][1])) end
return cmsgpack.pack(out)""",
    # CountFlows {}: {status, count, ..., 'due', count} -> flows per status and runnable now.
    "CountFlows": r"""
local out, due = {}, 0
for _, s in ipairs(STATUSES) do
  local n = redis.call('ZCARD', k('status', s))
  if n > 0 then out[#out + 1] = s; out[#out + 1] = n end
end
for _, t in ipairs(redis.call('SMEMBERS', P .. ':types')) do
  due = due + redis.call('ZCOUNT', k('ready', t), '-inf', NOW) + redis.call('ZCOUNT', k('leases', t), '-inf', NOW)
end
out[#out + 1] = 'due'; out[#out + 1] = due
return out""",
}

# Error replies after which the same batch may succeed later: Redis is unavailable, not broken
# (loading its data, a replica, out of memory, cannot write its AOF or RDB, busy in a script).
# redis-py gives some codes classes of their own and drops the code from their message.
_TRANSIENT = ("LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "BUSY", "OOM", "NOREPLICAS",
              "CLUSTERDOWN", "NOSCRIPT", "MISCONF")
_TRANSIENT_REPLIES = (ReadOnlyError, OutOfMemoryError, TryAgainError, MasterDownError, ClusterDownError,
                      NoScriptError)
_ANNOTATION = "of pipeline caused error: "  # redis-py's prefix to a queued command's error reply


def _server_text(exc: BaseException) -> str:
    """What Redis said, without the command redis-py put in front of it (it holds raw payloads)."""
    text = str(exc)
    if _ANNOTATION in text:
        text = text.split(_ANNOTATION, 1)[1].strip("(),'\" ")
    code = getattr(exc, "status_code", None)
    return f"{code} {text}" if code and not text.startswith(code) else text


def _transient(exc: BaseException) -> bool:
    """True for a failure of Redis itself (down, slow, loading, busy, full), not of a command."""
    if not isinstance(exc, ResponseError) or isinstance(exc, _TRANSIENT_REPLIES):
        return True  # connection refused or lost, timeout, LOADING, a protocol error
    return _server_text(exc).split(" ", 1)[0].upper() in _TRANSIENT


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _failure(value: bytes | None, flow_id: str) -> Failure | None:
    """A flow's error field: wire.dumps bytes, or the marker the cancel script writes."""
    if value is None:
        return None
    return Failure.cancelled(flow_id) if value == b"!cancelled" else loads(value)


def _unpack(reply: bytes) -> list:
    """A reply packed by cmsgpack in Lua: strings arrive as bytes (an empty table may be a map)."""
    return list(msgpack.unpackb(reply, raw=True) or ())


def _flow(fields: list[bytes] | None) -> FlowRecord | None:
    """A flow from its hash, as the flat [field, value, ...] list HGETALL gives."""
    if not fields:
        return None
    g = dict(zip(fields[::2], fields[1::2])).get
    flow_id = g(b"flow_id").decode()
    number = lambda name: None if g(name) is None else float(g(name))  # noqa: E731
    return FlowRecord(
        flow_id, g(b"flow_type").decode(), g(b"args"), g(b"status").decode(), _text(g(b"version")),
        int(g(b"attempt")), int(g(b"epoch")), _text(g(b"owner")), number(b"lease_expires"),
        number(b"ready_at"), g(b"result"), _failure(g(b"error"), flow_id), _text(g(b"parent_id")),
        float(g(b"created_at")), float(g(b"updated_at")), _text(g(b"waiting_on")),
        g(b"cancel_requested") is not None)


def _step(packed: bytes | None) -> StepRecord | None:
    """A journaled step: msgpack [base, status, result|false, error|false, completed_at]."""
    if packed is None:
        return None
    base, status, result, error, completed_at = msgpack.unpackb(packed, raw=True)
    position, name, args_hash, attempt, tries, retry_at = msgpack.unpackb(base)
    return StepRecord(position, name, args_hash, status.decode(), None if result is False else result,
                      None if error is False else loads(error), attempt, float(completed_at), tries, retry_at)


def _steps(values: list[bytes]) -> list[StepRecord]:
    return sorted((_step(v) for v in values), key=lambda s: s.position)


def _step_fields(flow_id: str, epoch: int, s: StepRecord) -> list[Any]:
    base = msgpack.packb([s.position, s.name, s.args_hash, s.attempt, s.tries, s.retry_at])
    return [flow_id, epoch, s.position, base, str(s.status), s.result,
            None if s.error is None else dumps(s.error)]


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in user:
        return url
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


Plan = tuple[tuple | None, Callable[[Any], object]]  # (the Redis command or None, reply decoder)


class RedisExecutionLog(LogBase):
    """A store in one Redis database (standalone or a primary with replicas; not Redis Cluster).

    Args:
        url: redis://[:password@]host:port/db (or rediss:// for TLS).
        prefix: the first part of every key, so several stores can share one database.
        timeout: seconds to wait for a connection or a reply before StoreUnavailableError.
    """

    def __init__(self, url: str, *, prefix: str = "ergon", timeout: float = 10.0) -> None:
        parts, db = urlsplit(url), urlsplit(url).path.strip("/")
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or not port_ok or not (db == "" or db.isdigit()):
            raise ConfigError(f"Redis URL {_redact(url)!r}: write redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0")
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

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
        self._scripts = {name: client.register_script(_PRELUDE + body) for name, body in _SCRIPTS.items()}
        try:
            await client.ping()
            await self._load_scripts(client)
        except RedisError as exc:
            await client.aclose()
            raise self._unavailable(exc) from exc
        self._client = client
        return self

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _load_scripts(self, client: aioredis.Redis) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for script in self._scripts.values():
                pipe.script_load(script.script)
            await pipe.execute()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({_redact(self.url)!r}, prefix={self.prefix!r}, "
                f"connected={self._client is not None})")

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"Redis at {_redact(self.url)} is unavailable: {_server_text(exc)}")

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        """Apply the commands as one MULTI/EXEC transaction.

        Raises:
            StoreUnavailableError: Redis is down, slow past `timeout`, loading, busy or out of
                memory or disk; some commands may have been applied, and sending the same ones
                again is safe.
            StoreError: not connected, or Redis failed the transaction for another reason.
        """
        if self._client is None:
            raise StoreError("store is not connected: await store.connect() first")
        plans = [self._plan(c) for c in commands]
        replies = await self._transaction([p[0] for p in plans if p[0] is not None])
        results: list[object] = []
        queue = iter(replies)
        for command, (redis_command, decode) in zip(commands, plans):
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

    async def _transaction(self, redis_commands: list[tuple]) -> list[object]:
        """Run the commands as one MULTI/EXEC in one round trip, reloading scripts once if needed."""
        if not redis_commands:
            return []
        for attempt in (1, 2):
            try:
                async with self._client.pipeline(transaction=True) as pipe:
                    for args in redis_commands:
                        pipe.execute_command(*args)
                    replies = await pipe.execute(raise_on_error=False)
                if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                    await self._load_scripts(self._client)  # Redis restarted: its script cache is empty
                    continue
                return replies
            except (RedisError, OSError) as exc:
                if _transient(exc):
                    raise self._unavailable(exc) from exc
                raise StoreError(f"Redis at {_redact(self.url)} failed a transaction: {_server_text(exc)}") from exc
        return replies

    def _refusal(self, command: Command, exc: Exception) -> Exception:
        """The refusal or error a script's error reply stands for (raised if Redis itself failed).

        A script checks before it writes, so an error reply about the command's content means
        nothing of that command was applied; the other commands of the batch were.
        """
        if _transient(exc):
            raise self._unavailable(exc)
        code, _, reason = str(exc).partition(" ")
        flow_id = getattr(command, "flow_id", None)
        if code == "ERGON_FENCED":
            return FencedError(flow_id, command.epoch, reason)
        if code == "ERGON_NOTFOUND":
            return FlowNotFoundError(flow_id)
        if code == "ERGON_BUSY":
            return FlowBusyError(flow_id)
        if code == "ERGON_CANCELLED":
            return FlowCancelledError(flow_id)
        return invalid(command, exc)

    def _script(self, name: str, fields: list[Any]) -> tuple:
        return ("EVALSHA", self._scripts[name].sha, 0, self.prefix, msgpack.packb(fields, use_bin_type=False))

    # -- one plan per command: (the Redis command, how to decode its reply) ----------------------

    def _ScheduleFlow(self, c: ScheduleFlow) -> Plan:
        fields = [c.flow_id, c.flow_type, c.args, c.version, c.ready_at, c.parent_id]
        return self._script("ScheduleFlow", fields), lambda r: Scheduled(c.flow_id, r == 1)

    def _ClaimFlows(self, c: ClaimFlows) -> Plan:
        fields = [c.worker_id, c.request_id, c.limit, c.lease_seconds, c.flow_types, c.flow_id, c.steal]
        return (self._script("ClaimFlows", fields),
                lambda r: [Claim(_flow(flow), tuple(_steps(steps))) for flow, steps in _unpack(r)])

    def _RenewLeases(self, c: RenewLeases) -> Plan:
        return self._script("RenewLeases", [c.worker_id, c.lease_seconds, c.flow_ids]), int

    def _ReleaseWorker(self, c: ReleaseWorker) -> Plan:
        return self._script("ReleaseWorker", [c.worker_id]), int

    def _AppendStep(self, c: AppendStep) -> Plan:
        return self._script("AppendStep", _step_fields(c.flow_id, c.epoch, c.step)), lambda r: None

    def _FinishFlow(self, c: FinishFlow) -> Plan:
        error = None if c.error is None else dumps(c.error)
        fields = [c.flow_id, c.epoch, str(c.status), c.result, error]
        return self._script("FinishFlow", fields), lambda r: None

    def _SuspendFlow(self, c: SuspendFlow) -> Plan:
        error = None if c.error is None else dumps(c.error)
        fields = [c.flow_id, c.epoch, c.ready_at, c.attempt, error]
        return self._script("SuspendFlow", fields), lambda r: None

    def _AwaitSignal(self, c: AwaitSignal) -> Plan:
        fields = _step_fields(c.flow_id, c.epoch, c.step) + [c.signal, c.ready_at]
        return self._script("AwaitSignal", fields), _step

    def _SendSignal(self, c: SendSignal) -> Plan:
        return self._script("SendSignal", [c.name, c.payload]), lambda r: r == 1

    def _InvokeChild(self, c: InvokeChild) -> Plan:
        child = c.child
        fields = _step_fields(c.flow_id, c.epoch, c.step) + [
            child.flow_id, child.flow_type, child.args, child.version, child.ready_at,
            dumps(Failure.cancelled(child.flow_id))]
        return self._script("InvokeChild", fields), _step

    def _CancelFlow(self, c: CancelFlow) -> Plan:
        return self._script("CancelFlow", [c.flow_id]), lambda r: r.decode()

    def _WaitingSignals(self, c: WaitingSignals) -> Plan:
        if c.limit <= 0:
            return None, lambda r: []
        command = ("ZRANGE", f"{self.prefix}:waitnames", 0, c.limit - 1)
        return command, lambda r: [name.decode() for name in r]

    def _GetFlow(self, c: GetFlow) -> Plan:
        return self._script("GetFlow", [c.flow_id]), lambda r: r and _flow(_unpack(r))

    def _LoadSteps(self, c: LoadSteps) -> Plan:
        return self._script("LoadSteps", [c.flow_id]), lambda r: _steps(_unpack(r))

    def _ListFlows(self, c: ListFlows) -> Plan:
        if c.limit <= 0:
            return None, lambda r: []
        fields = [None if c.status is None else str(c.status), c.limit]
        return self._script("ListFlows", fields), lambda r: [_flow(h) for h in _unpack(r)]

    def _CountFlows(self, c: CountFlows) -> Plan:
        cap = (lambda n: n) if c.limit is None else (lambda n: min(n, c.limit))
        return self._script("CountFlows", []), lambda r: {r[i].decode(): cap(int(r[i + 1])) for i in range(0, len(r), 2)}
