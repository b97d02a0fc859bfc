"""Redis plans and Lua scripts of the cron schedule and retention commands.

Schedules live in one hash, P:schedules, name -> cmsgpack array {name, cron, flow_type, args,
missed, paused, last_tick, revision, created_at}. Counts by status need nothing more: each
status's sorted set (P:status:S) is kept by every script that changes a flow, and ZCARD is O(1).
Mixed into RedisExecutionLog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from .schedules import check_change, check_prune, check_put
from .upkeep_commands import ChangeSchedule, CronSchedule, FireSchedule, ListSchedules, PruneFlows, PutSchedule

__all__ = ["RedisUpkeep", "UPKEEP_SCRIPTS", "SCHEDULE_PRELUDE"]

Plan = tuple[bytes | None, Callable[[Any], object]]

# Before the bodies below (after storage.redis_scripts.PRELUDE): a schedule read and written
# as the Lua array of its fields.
SCHEDULE_PRELUDE = r"""
local function load_schedule(name)
  local raw = redis.call('HGET', P .. ':schedules', name)
  return raw and cmsgpack.unpack(raw)
end
local function save_schedule(s)  -- -> the packed schedule
  local raw = cmsgpack.pack(s)
  redis.call('HSET', P .. ':schedules', s[1], raw)
  return raw
end
"""

UPKEEP_SCRIPTS = {
    # PutSchedule {name, cron, type, args, missed}: create, or replace as a new revision unless
    # the same -> the packed schedule.
    "PutSchedule": r"""
local s = load_schedule(C[1])
if s then
  if s[2] == C[2] and s[3] == C[3] and s[4] == C[4] and s[5] == C[5] then return cmsgpack.pack(s) end
  s[2], s[3], s[4], s[5], s[8] = C[2], C[3], C[4], C[5], s[8] + 1
else
  s = {C[1], C[2], C[3], C[4], C[5], false, NOW, 1, NOW}
end
return save_schedule(s)""",
    # ChangeSchedule {name, action}: pause, resume (from now) or delete -> the packed schedule,
    # or nil once deleted.
    "ChangeSchedule": r"""
local s = load_schedule(C[1])
if not s then return redis.error_reply('ERGON_NOSCHEDULE') end
if C[2] == 'delete' then redis.call('HDEL', P .. ':schedules', C[1]) return false end
if C[2] == 'pause' then s[6] = true
elseif s[6] then
  s[6] = false
  if NOW > s[7] then s[7] = NOW end
end
return save_schedule(s)""",
    # FireSchedule {name, revision, ticks, flow ids, through}: a flow per tick after the last
    # one (unless its id exists), then the last tick moves to `through` -> the ids created, packed.
    "FireSchedule": r"""
local s = load_schedule(C[1])
if not s or s[6] or s[8] ~= C[2] then return cmsgpack.pack({}) end
local created = {}
for i, tick in ipairs(C[3]) do
  if tick > s[7] and schedule(C[4][i], s[3], s[4], nil, nil, nil, {type = s[3]}) == 1 then
    created[#created + 1] = C[4][i]
  end
end
if C[5] > s[7] then
  s[7] = C[5]
  save_schedule(s)
end
return cmsgpack.pack(created)""",
    # ListSchedules {}: -> every packed schedule.
    "ListSchedules": "return redis.call('HVALS', P .. ':schedules')",
    # PruneFlows {before, statuses, limit}: delete up to limit ended flows of the statuses that
    # ended before `before` and whose parent (if any) ended, with their steps, events and index
    # entries -> the number deleted. Walks each status's set in schedule order and stops at the
    # first flow created after `before` (it cannot have ended before it).
    "PruneFlows": r"""
local before, limit, n = C[1], C[3], 0
local function delete(id, parent, status)
  redis.call('DEL', k('flow', id), k('steps', id), k('events', id), k('children', id))
  redis.call('ZREM', k('status', status), id)
  redis.call('ZREM', P .. ':all', id)
  redis.call('SREM', P .. ':quarantined', id)
  if parent then redis.call('SREM', k('children', parent), id) end
end
for _, status in ipairs(C[2]) do
  local offset, stop = 0, n >= limit
  while not stop do
    local ids = redis.call('ZRANGE', k('status', status), offset, offset + 199)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      local h = redis.call('HMGET', k('flow', id), 'created_at', 'updated_at', 'parent_id')
      if tonumber(h[1]) >= before then stop = true break end
      local parent = h[3] and redis.call('HGET', k('flow', h[3]), 'status')
      if tonumber(h[2]) < before and not (parent and not TERMINAL[parent]) then
        delete(id, h[3], status)
        n = n + 1
        if n >= limit then stop = true break end
      else
        offset = offset + 1
      end
    end
  end
end
return n""",
}


def _schedule(raw: bytes) -> CronSchedule:
    name, cron, flow_type, args, missed, paused, last_tick, revision, created_at = msgpack.unpackb(raw, raw=True)
    return CronSchedule(name.decode(), cron.decode(), flow_type.decode(), args, missed.decode(), bool(paused),
                        float(last_tick), int(revision), float(created_at))


class RedisUpkeep:
    """One plan per command: (the command packed for the batch script, how to decode its reply)."""

    prefix: str
    if TYPE_CHECKING:
        def _script(self, name: str, fields: list[Any]) -> bytes: ...

    def _PutSchedule(self, c: PutSchedule) -> Plan:
        check_put(c)
        return self._script("PutSchedule", [c.name, c.cron, c.flow_type, c.args, c.missed]), _schedule

    def _ListSchedules(self, c: ListSchedules) -> Plan:
        return self._script("ListSchedules", []), lambda r: sorted((_schedule(v) for v in r), key=lambda s: s.name)

    def _ChangeSchedule(self, c: ChangeSchedule) -> Plan:
        check_change(c)
        return self._script("ChangeSchedule", [c.name, c.action]), lambda r: r and _schedule(r)

    def _FireSchedule(self, c: FireSchedule) -> Plan:
        if len(c.ticks) != len(c.flow_ids):
            raise ValueError(f"{len(c.ticks)} ticks but {len(c.flow_ids)} flow ids")
        fields = [c.name, c.revision, list(c.ticks), list(c.flow_ids), c.through]
        return self._script("FireSchedule", fields), lambda r: [i.decode() for i in msgpack.unpackb(r, raw=True)]

    def _PruneFlows(self, c: PruneFlows) -> Plan:
        statuses = check_prune(c)
        if c.limit == 0:
            return None, lambda r: 0
        return self._script("PruneFlows", [c.before, list(statuses), c.limit]), int
