"""The Redis store's Lua: one body per command, all run by one script per batch (see docs/redis.md)."""

from __future__ import annotations

__all__ = ["PRELUDE", "SCRIPTS", "batch_script"]

# Shared by every command's body. ARGV[1] is the key prefix; NOW is the Redis server's time, read
# once per batch. A flow is a Lua table of its hash fields (strings; numbers when just computed; nil when None);
# save() writes the changed fields and keeps every index in step with the flow's state.
PRELUDE = r"""
local P = ARGV[1]
local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000
local CANCELLED = '!cancelled'  -- error field of a cancelled flow: the standard cancellation failure
local POISON = '!poison'  -- error field of a quarantined flow: POISON .. pack({id, crashes}), read by redis.py
local TERMINAL = {COMPLETE = true, FAILED = true, CANCELLED = true}
local STATUSES = {'PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETE', 'FAILED', 'CANCELLED'}
local FIELDS = {'flow_id', 'flow_type', 'args', 'status', 'version', 'attempt', 'epoch', 'owner',
  'lease_expires', 'ready_at', 'result', 'error', 'parent_id', 'created_at', 'updated_at',
  'waiting_on', 'cancel_requested', 'seq', 'crashes', 'suspect', 'queue', 'priority', 'qkey', 'dedup'}
local function k(kind, name) return P .. ':' .. kind .. ':' .. name end
local function get(id)
  local raw = redis.call('HGETALL', k('flow', id))
  if #raw == 0 then return nil end
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end
local function lease_of(id)  -- only what fence() reads of a flow, or nil for no flow
  local h = redis.call('HMGET', k('flow', id), 'epoch', 'status', 'cancel_requested')
  if not h[2] then return nil end
  return {flow_id = id, epoch = h[1], status = h[2], cancel_requested = h[3] or nil}
end
local function copy(f) local c = {} for n, v in pairs(f) do c[n] = v end return c end
local function signal_of(f)
  if f and f.status == 'SUSPENDED' and f.waiting_on and string.sub(f.waiting_on, 1, 7) == 'signal:' then
    return string.sub(f.waiting_on, 8)
  end
end
local function queued(f)  -- in its ready set: waiting for ready_at
  return f and (f.status == 'PENDING' or f.status == 'SUSPENDED') and f.ready_at ~= nil
end
-- A flow of the default queue waits in its type's ready set and runs in its type's lease set; a
-- flow of a named queue in its queue's set of its priority, and in its queue's lease set.
local function ready_key(f)
  if not f.queue then return k('ready', f.flow_type) end
  return k('qready', f.queue .. ':' .. f.priority)
end
local function lease_key(f) return f.queue and k('qleases', f.queue) or k('leases', f.flow_type) end
local function bump(hash, field, by)  -- a count kept in a hash field, gone at 0
  if redis.call('HINCRBY', hash, field, by) <= 0 then redis.call('HDEL', hash, field) end
end
local function running_in_queue(f, by)  -- count f, RUNNING in its named queue, in (or out of) the figures
  bump(P .. ':qrunning', f.queue, by)
  bump(k('qowners', f.queue), f.owner, by)
  if f.qkey then bump(k('qkeys', f.queue), f.qkey, by) end
end
local function suspected(f)  -- in the suspects set: runs in its group next
  return f ~= nil and f.suspect ~= nil and not TERMINAL[f.status]
end
local function poisoned(f)  -- in the quarantined set
  return f ~= nil and f.status == 'FAILED' and f.error ~= nil and string.sub(f.error, 1, #POISON) == POISON
end
local function pinned(f) return f ~= nil and not TERMINAL[f.status] and f.version or nil end  -- its version set
local function member(set, id, was, is)
  if was ~= is then redis.call(is and 'SADD' or 'SREM', P .. ':' .. set, id) end
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
    if not queued(old) or old.ready_at ~= f.ready_at then
      redis.call('ZADD', ready_key(f), f.ready_at, id)
      if f.queue then redis.call('ZADD', k('qprios', f.queue), f.priority, f.priority) end
    end
  elseif queued(old) then redis.call('ZREM', ready_key(f), id) end
  if f.status == 'RUNNING' then
    if not old or old.lease_expires ~= f.lease_expires then
      redis.call('ZADD', lease_key(f), f.lease_expires, id)
    end
  elseif old and old.status == 'RUNNING' then redis.call('ZREM', lease_key(f), id) end
  if f.queue then
    local was = old and old.status == 'RUNNING'
    if was and (f.status ~= 'RUNNING' or old.owner ~= f.owner) then running_in_queue(old, -1) end
    if f.status == 'RUNNING' and (not was or old.owner ~= f.owner) then running_in_queue(f, 1) end
  end
  if f.queue and (old == nil or TERMINAL[old.status] ~= TERMINAL[f.status]) then
    if not TERMINAL[f.status] then bump(P .. ':qlive', f.queue, 1)
    elseif old then bump(P .. ':qlive', f.queue, -1) end
  end
  if f.dedup then
    local key = k('dedup', (f.queue or '') .. ':' .. f.dedup)
    if TERMINAL[f.status] and not (old and TERMINAL[old.status]) then
      if redis.call('GET', key) == id then redis.call('DEL', key) end
    elseif not TERMINAL[f.status] and (old == nil or TERMINAL[old.status]) then
      redis.call('SET', key, id, 'NX')
    end
  end
  if old and old.owner and old.owner ~= f.owner then redis.call('SREM', k('owned', old.owner), id) end
  if f.owner and f.owner ~= (old and old.owner) then redis.call('SADD', k('owned', f.owner), id) end
  local was_v, is_v = pinned(old), pinned(f)
  if was_v ~= is_v then
    if was_v then redis.call('SREM', k('version', was_v), id) end
    if is_v then redis.call('SADD', k('version', is_v), id) end
  end
  member('suspects', id, suspected(old), suspected(f))
  member('quarantined', id, poisoned(old), poisoned(f))
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
local function queue_due(q)  -- a named queue's flows runnable now
  local due = redis.call('ZCOUNT', k('qleases', q), '-inf', NOW)
  for _, p in ipairs(redis.call('ZRANGE', k('qprios', q), 0, -1)) do
    due = due + redis.call('ZCOUNT', k('qready', q .. ':' .. p), '-inf', NOW)
  end
  return due
end
local function event(id, kind, data)  -- append to the flow's history; data: JSON text or a table
  if type(data) ~= 'string' then data = next(data) == nil and '{}' or cjson.encode(data) end
  redis.call('RPUSH', k('events', id), cmsgpack.pack({NOW, kind, data}))
end
local function fence(f, epoch, cancelling)
  if f == nil then return 'ERGON_NOTFOUND' end
  if tonumber(f.epoch) ~= epoch then return 'ERGON_FENCED flow is at epoch ' .. f.epoch end
  if f.status ~= 'RUNNING' then return 'ERGON_FENCED flow is ' .. f.status end
  if f.cancel_requested and not cancelling then return 'ERGON_CANCELLED' end
end
local function refuse(f, epoch, refused, command)  -- the error reply, a fenced write recorded
  if string.sub(refused, 1, 12) == 'ERGON_FENCED' then
    event(f.flow_id, 'fenced', {epoch = epoch, command = command, reason = string.sub(refused, 14)})
  end
  return redis.error_reply(refused)
end
local HEADERS = {[0xd4] = 2, [0xd5] = 2, [0xd6] = 2, [0xd7] = 2, [0xd8] = 2, [0xc7] = 3, [0xc8] = 4, [0xc9] = 6}
local function error_type(e)  -- the type of a stored Failure (storage.records: an ext of an array)
  if not e then return nil end
  if e == CANCELLED then return 'ergon_actors.errors:FlowCancelledError' end
  if string.sub(e, 1, #POISON) == POISON then return 'ergon_actors.errors:PoisonFlowError' end
  local skip = HEADERS[string.byte(e, 1)]
  if not skip then return nil end
  local ok, fields = pcall(cmsgpack.unpack, string.sub(e, skip + 1))
  if ok and type(fields) == 'table' then return fields[1] end
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
local function child_ended(f)  -- tell its parent: in the parent's history, and wake it if it waits
  if f.parent_id and redis.call('EXISTS', k('flow', f.parent_id)) == 1 then
    event(f.parent_id, 'child_finished', {child = f.flow_id, status = f.status})
    wake(f.parent_id, 'child:' .. f.flow_id)
  end
end
-- Create a flow unless it exists (-> 0) or, with a dedup id, a live flow of its queue has that id
-- (-> that flow's id); q: nil, or {queue, priority, key, dedup id}. -> 1 when created.
local function schedule(id, flow_type, args, version, ready_at, parent, scheduled, q)
  if redis.call('EXISTS', k('flow', id)) == 1 then return 0 end
  q = q or {}
  if q[4] then
    local other = redis.call('GET', k('dedup', (q[1] or '') .. ':' .. q[4]))
    if other then return other end
  end
  local seq = redis.call('INCR', P .. ':seq')
  save({flow_id = id, flow_type = flow_type, args = args, status = 'PENDING', version = version,
        attempt = 1, epoch = 0, ready_at = ready_at or NOW, parent_id = parent, created_at = NOW,
        updated_at = NOW, seq = seq, queue = q[1], priority = q[1] and (q[2] or 0) or nil, qkey = q[3],
        dedup = q[4]}, nil)
  if q[1] then redis.call('SADD', P .. ':queues', q[1]) end
  redis.call('SADD', P .. ':types', flow_type)
  redis.call('ZADD', P .. ':all', seq, id)
  if parent then redis.call('SADD', k('children', parent), id) end
  event(id, 'scheduled', scheduled)
  return 1
end
-- End `command`'s run of flow id (fenced by epoch) with status and changes (false: set to
-- None), recording the event (kind, JSON details) unless kind is nil.
local function finish(id, epoch, status, changes, command, kind, details)
  local f = get(id)
  local refused = fence(f, epoch, status == 'CANCELLED')
  if refused then
    if f and tonumber(f.epoch) == epoch and f.status == status then return nil end  -- a re-send
    return refuse(f, epoch, refused, command)
  end
  local new = copy(f)
  new.status, new.owner, new.lease_expires, new.updated_at, new.suspect = status, nil, nil, NOW, nil
  for n, v in pairs(changes) do if v == false then new[n] = nil else new[n] = v end end
  save(new, f)
  if kind then event(id, kind, details) end
  if TERMINAL[status] then child_ended(new) end
end
"""

SCRIPTS = {
    # ScheduleFlow {id, type, args, version, ready_at, parent}: create unless it exists -> 1/0.
    # ... and the details of its scheduled event (JSON).
    # ... then {queue, priority, key, dedup id} -> 1, 0 or the id of the live flow with that dedup id.
    "ScheduleFlow": "return schedule(C[1], C[2], C[3], C[4], C[5], C[6], C[7], C[8])",
    # ClaimFlows {worker, request, limit, lease, types, flow_id, steal, solo, version}: lease runnable flows,
    # earliest due first, from the due head of each type's ready/lease sets (past other versions'; a flow of
    # none is pinned). While a suspect of the types is due, only a solo claim takes anything: the earliest
    # due suspect and the next due ones whose group size is at least its own, up to its size.
    "ClaimFlows": r"""
local worker, request, limit, lease, types, only, steal = C[1], C[2], C[3], C[4], C[5], C[6], C[7]
local version = C[9]
local wanted = nil
if types then wanted = {} for _, t in ipairs(types) do wanted[t] = true end end
local function serves(v) return not version or not v or v == version end
local function due_head(key, room)  -- up to room due flows of a ready/lease set that this claim serves
  local out, offset, size = {}, 0, room
  repeat  -- pages that double in size: stepping over n flows of other versions costs O(n)
    local r = redis.call('ZRANGEBYSCORE', key, '-inf', NOW, 'WITHSCORES', 'LIMIT', offset, size)
    for i = 1, #r, 2 do
      if not version or serves(redis.call('HGET', k('flow', r[i]), 'version')) then
        out[#out + 1] = {r[i], tonumber(r[i + 1])}
      end
    end
    local full = #r == 2 * size
    offset, size = offset + size, size * 2
  until not version or #out >= room or not full
  return out
end
local function due_suspects()  -- the due suspects of the types, earliest first (suspects are few)
  local due_ones = {}
  for _, id in ipairs(redis.call('SMEMBERS', P .. ':suspects')) do
    local f = get(id)
    local due = f.status == 'RUNNING' and tonumber(f.lease_expires) or tonumber(f.ready_at)
    if due and due <= NOW and (not wanted or wanted[f.flow_type]) and serves(f.version) then
      due_ones[#due_ones + 1] = {id, due, tonumber(f.suspect)}
    end
  end
  table.sort(due_ones, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
  return due_ones
end
-- Named queues (the rules of storage/queue_rules.py): an admitter takes the flows a queue lets
-- this claim have; its limits L = {concurrency, worker_concurrency, key_concurrency, rate_limit,
-- rate_period}, false for none; nil for a queue never declared.
local function admitter(q, want)
  local raw = redis.call('HGET', P .. ':qlimits', q)
  local L = raw and cmsgpack.unpack(raw)
  local a = {q = q, L = L, running = 0, keys = {}, room = want, picked = {}}
  if L then
    if L[1] then a.running = tonumber(redis.call('HGET', P .. ':qrunning', q) or '0') end
    if L[2] then a.room = math.min(a.room, L[2] - tonumber(redis.call('HGET', k('qowners', q), worker) or '0')) end
    if L[4] then
      redis.call('ZREMRANGEBYSCORE', k('qstarts', q), '-inf', NOW - L[5])
      a.room = math.min(a.room, L[4] - redis.call('ZCARD', k('qstarts', q)))
    end
  end
  return a
end
local function full(a) return #a.picked >= a.room end
local function offer(a, id, key, running)  -- take the flow if its queue has room; running: lease lapsed
  local L = a.L
  if full(a) then return end
  if L and not running then  -- a lapsed lease counts as running already: taking it over adds nothing
    if L[1] and a.running >= L[1] then return end
    if L[3] and key then
      local n = a.keys[key] or tonumber(redis.call('HGET', k('qkeys', a.q), key) or '0')
      a.keys[key] = n
      if n >= L[3] then return end
      a.keys[key] = n + 1
    end
    a.running = a.running + 1
  end
  a.picked[#a.picked + 1] = id
end
local function fill(a)  -- offer lapsed leases, then due flows by priority and due time (a bounded walk)
  if a.room <= 0 then return end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('qleases', a.q), '-inf', NOW, 'LIMIT', 0, a.room)) do
    local h = redis.call('HMGET', k('flow', id), 'flow_type', 'qkey', 'version')
    if (not wanted or wanted[h[1]]) and serves(h[3]) then offer(a, id, h[2], true) end
  end
  local budget = 1000
  for _, p in ipairs(redis.call('ZREVRANGE', k('qprios', a.q), 0, -1)) do
    local set, offset = k('qready', a.q .. ':' .. p), 0
    if redis.call('EXISTS', set) == 0 then redis.call('ZREM', k('qprios', a.q), p) end
    while not full(a) and budget > 0 and not (a.L and a.L[1] and a.running >= a.L[1]) do
      local r = redis.call('ZRANGEBYSCORE', set, '-inf', NOW, 'LIMIT', offset, 100)
      for _, id in ipairs(r) do
        budget = budget - 1
        local h = redis.call('HMGET', k('flow', id), 'flow_type', 'qkey', 'version')
        if (not wanted or wanted[h[1]]) and serves(h[3]) then offer(a, id, h[2], false) end
        if full(a) then break end
      end
      if #r < 100 then break end
      offset = offset + #r
    end
    if full(a) or budget <= 0 then break end
  end
end
local function started(a, taken)  -- count the claims of a rate-limited queue in its window
  if a.L and a.L[4] then
    for _, id in ipairs(a.picked) do
      if taken[id] then redis.call('ZADD', k('qstarts', a.q), NOW, id .. ':' .. NOW) end
    end
  end
end
local function queued_claim()  -- round robin across the named queues' admitted flows
  local names = redis.call('SMEMBERS', P .. ':queues')
  if #names == 0 then return {} end
  table.sort(names)
  local admitted, out, taken = {}, {}, {}
  for _, q in ipairs(names) do
    local a = admitter(q, limit)
    fill(a)
    if #a.picked > 0 then admitted[#admitted + 1] = a end
  end
  local round = 1
  while #out < limit do
    local any = false
    for _, a in ipairs(admitted) do
      local id = a.picked[round]
      if id and #out < limit then out[#out + 1] = id; taken[id] = true; any = true end
    end
    if not any then break end
    round = round + 1
  end
  for _, a in ipairs(admitted) do started(a, taken) end
  return out
end
local last, ids, leased = k('lastclaim', worker), {}, {}
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
    local suspects = due_suspects()
    if #suspects > 0 then
      local size, group, admitters = suspects[1][3], {}, {}
      for _, sus in ipairs(suspects) do
        if C[8] and #group < math.min(limit, size) and sus[3] >= size then group[#group + 1] = sus[1] end
      end
      for _, id in ipairs(group) do  -- each of a named queue waits for room in its queue
        local f = get(id)
        if f.queue then
          admitters[f.queue] = admitters[f.queue] or admitter(f.queue, #group)
          offer(admitters[f.queue], id, f.qkey, f.status == 'RUNNING')
        else ids[#ids + 1] = id end
      end
      for _, a in pairs(admitters) do
        local taken = {}
        for _, id in ipairs(a.picked) do ids[#ids + 1] = id; taken[id] = true end
        started(a, taken)
      end
    else
      ids = queued_claim()
      local seen, found, room = {}, {}, limit - #ids
      if room > 0 then
        for _, t in ipairs(types or redis.call('SMEMBERS', P .. ':types')) do
          if not seen[t] then
            seen[t] = true
            for _, index in ipairs({'leases', 'ready'}) do
              for _, due in ipairs(due_head(k(index, t), room)) do found[#found + 1] = due end
            end
          end
        end
        table.sort(found, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
        for i = 1, math.min(room, #found) do ids[#ids + 1] = found[i][1] end
      end
    end
  end
  for _, id in ipairs(ids) do
    local f = get(id)
    local new = copy(f)
    new.status, new.epoch, new.owner = 'RUNNING', tonumber(f.epoch) + 1, worker
    new.lease_expires, new.waiting_on, new.updated_at = NOW + lease, nil, NOW
    if not only and not f.version then new.version = version end
    save(new, f)
    leased[id] = new
    if f.status == 'RUNNING' then  -- its lease lapsed (or, with steal, was taken)
      local lost = {worker = f.owner, epoch = tonumber(f.epoch)}
      if tonumber(f.lease_expires) > NOW then lost.taken = true end
      event(id, 'lease_expired', lost)
    elseif f.status == 'SUSPENDED' and f.waiting_on and string.sub(f.waiting_on, 1, 6) == 'timer:' then
      event(id, 'timer_fired', {name = string.sub(f.waiting_on, 7)})
    end
    event(id, 'claimed', {worker = worker, epoch = new.epoch})
  end
  redis.call('HSET', last, 'request', request, 'ids', cmsgpack.pack(ids))
  redis.call('EXPIRE', last, 86400)
end
local out = {}
for i, id in ipairs(ids) do
  local flow = leased[id]  -- as just saved: its fields as HGETALL lists them, without reading them again
  if flow then
    local fields = {}
    for n, v in pairs(flow) do fields[#fields + 1] = n; fields[#fields + 1] = v end
    flow = fields
  else flow = redis.call('HGETALL', k('flow', id)) end  -- a re-sent claim
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
    event(id, 'released', {worker = C[1], epoch = tonumber(f.epoch)})
  end
end
return n""",
    # AppendStep {id, epoch, pos, base, status, result, error, event kind, its details}: journal
    # a step; a COMPLETE step is never overwritten (re-sent by its epoch: a no-op even after
    # the flow ended).
    "AppendStep": r"""
local f = lease_of(C[1])
local done = f and redis.call('HGET', k('steps', C[1]), C[3])
local complete = done and cmsgpack.unpack(done)[2] == 'COMPLETE'
if complete and tonumber(f.epoch) == C[2] then return false end
local refused = fence(f, C[2], false)
if refused then return refuse(f, C[2], refused, 'AppendStep') end
if not complete then
  redis.call('HSET', k('steps', C[1]), C[3], step(C[4], C[5], C[6], C[7]))
  event(C[1], C[8], C[9])
end
return false""",
    # FinishFlow {id, epoch, status, result, error, event kind, its details}: end the flow;
    # wakes a parent waiting on it.
    "FinishFlow": r"""
return finish(C[1], C[2], C[3], {result = C[4] or false, error = C[5] or false, ready_at = false,
                                 waiting_on = false}, 'FinishFlow', C[6], C[7]) or false""",
    # SuspendFlow {id, epoch, ready_at, attempt, error, waiting_on, event kind, its details}:
    # park until ready_at (nil: until woken).
    "SuspendFlow": r"""
local changes = {ready_at = C[3] or false, waiting_on = C[6] or false}
if C[4] then changes.attempt = C[4] end
if C[5] then changes.error = C[5] end
return finish(C[1], C[2], 'SUSPENDED', changes, 'SuspendFlow', C[7], C[8]) or false""",
    # AwaitSignal {id, epoch, pos, base, status, result, error, signal, ready_at, details of the
    # signal_waiting event}: take the signal once (-> the journaled step) or suspend waiting for
    # it (-> nil).
    "AwaitSignal": r"""
local id, epoch, pos, name = C[1], C[2], C[3], C[8]
local f = get(id)
local done = recorded(f, epoch, pos)
if done then return done end
local refused = fence(f, epoch, false)
if refused then return refuse(f, epoch, refused, 'AwaitSignal') end
local payload = redis.call('HGET', P .. ':signals', name)
if payload and redis.call('HSETNX', P .. ':consumed', name, id) == 1 then
  local s = step(C[4], 'COMPLETE', payload, C[7])
  redis.call('HSET', k('steps', id), pos, s)
  event(id, 'signal_received', {name = name})
  return s
end
finish(id, epoch, 'SUSPENDED', {ready_at = C[9] or false, waiting_on = 'signal:' .. name}, 'AwaitSignal',
       'signal_waiting', C[10])
return false""",
    # SendSignal {name, payload}: store it unless sent before (-> 0) and wake its waiters (-> 1).
    "SendSignal": r"""
if redis.call('HSETNX', P .. ':signals', C[1], C[2]) == 0 then return 0 end
redis.call('ZREM', P .. ':waitnames', C[1])
for _, id in ipairs(redis.call('SMEMBERS', k('waiting', C[1]))) do wake(id, 'signal:' .. C[1]) end
return 1""",
    # InvokeChild {id, epoch, pos, base, status, result, error, child id, type, args, version,
    # ready_at, its cancellation failure, details of its scheduled event, the parent's ready_at,
    # {queue, priority, key} of the child}: schedule the child, then journal its outcome if it has
    # ended (-> the step) or suspend the parent until it ends, or until the parent's ready_at (-> nil).
    "InvokeChild": r"""
local id, epoch, pos, child = C[1], C[2], C[3], C[8]
local f = get(id)
local done = recorded(f, epoch, pos)
if done then return done end
local refused = fence(f, epoch, false)
if refused then return refuse(f, epoch, refused, 'InvokeChild') end
if schedule(child, C[9], C[10], C[11], C[12], id, C[14], C[16]) == 1 then
  event(id, 'child_started', {child = child, type = C[9]})
end
local c = get(child)
if TERMINAL[c.status] then
  local s
  local b = cmsgpack.unpack(C[4])  -- position, name, args_hash, attempt, tries, retry_at
  local details = {position = b[1], name = b[2], attempt = b[4], tries = b[5]}
  if c.status == 'COMPLETE' then
    s = step(C[4], 'COMPLETE', c.result, C[7])
    event(id, 'step_completed', details)
  else
    local err = c.error
    if not err or err == CANCELLED then err = C[13] end
    s = step(C[4], 'FAILED', C[6], err)
    details.error = error_type(err)
    event(id, 'step_failed', details)
  end
  redis.call('HSET', k('steps', id), pos, s)
  return s
end
finish(id, epoch, 'SUSPENDED', {ready_at = C[15] or false, waiting_on = 'child:' .. child}, 'InvokeChild')
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
  else new.status, new.ready_at, new.waiting_on, new.error, new.suspect = 'CANCELLED', nil, nil, CANCELLED, nil end
  save(new, f)
  if new.status == 'CANCELLED' then
    event(id, 'cancelled', {})
    child_ended(new)
  else event(id, 'cancel_requested', {}) end
  for _, c in ipairs(redis.call('SMEMBERS', k('children', id))) do cancel(c) end
  return new.status
end
return cancel(C[1]) or redis.error_reply('ERGON_NOTFOUND')""",
    # QueryFlows {statuses, types, created after, before, text in id, text in error type,
    # newest first, limit, cursor (a seq), budget}: -> packed {flow hashes, next cursor}. Walks
    # one sorted set by seq (the status's, or every flow's), examining at most `budget` flows.
    "QueryFlows": r"""
local statuses, types, after, before, id_text, err_text = C[1], C[2], C[3], C[4], C[5], C[6]
local newest, limit, cursor, budget = C[7], C[8], C[9], C[10]
local index, only, wanted = P .. ':all', nil, nil
if statuses and #statuses == 0 then return cmsgpack.pack({{}, false}) end
if statuses and #statuses == 1 then index = k('status', statuses[1])
elseif statuses then only = {} for _, s in ipairs(statuses) do only[s] = true end end
if types then wanted = {} for _, t in ipairs(types) do wanted[t] = true end end
local read = only or wanted or after or before or err_text
local out, examined, finished = {}, 0, false
while #out < limit and examined < budget and not finished do
  local n, r = math.min(budget - examined, 500), nil
  if newest then r = redis.call('ZREVRANGEBYSCORE', index, cursor and ('(' .. cursor) or '+inf', '-inf',
                                'WITHSCORES', 'LIMIT', 0, n)
  else r = redis.call('ZRANGEBYSCORE', index, cursor and ('(' .. cursor) or '-inf', '+inf',
                      'WITHSCORES', 'LIMIT', 0, n) end
  finished = #r < 2 * n
  for i = 1, #r, 2 do
    local id = r[i]
    examined, cursor = examined + 1, r[i + 1]
    if not id_text or string.find(id, id_text, 1, true) then  -- the id is at hand: no read needed
      local h = read and redis.call('HMGET', k('flow', id), 'status', 'flow_type', 'created_at', 'error')
      local created = h and tonumber(h[3])
      if not h or ((not only or only[h[1]]) and (not wanted or wanted[h[2]]) and (not after or created >= after)
                   and (not before or created < before)
                   and (not err_text or (h[4] and string.find(error_type(h[4]) or '', err_text, 1, true)))) then
        out[#out + 1] = redis.call('HGETALL', k('flow', id))
      end
    end
    if #out == limit and i + 1 < #r then finished = false break end
  end
end
if finished then cursor = nil end
return cmsgpack.pack({out, cursor or false})""",
    # IndexAll {}: the set of every flow by seq (P:all), built once from the status sets for a
    # store written before it existed.
    "IndexAll": r"""
if redis.call('EXISTS', P .. ':all') == 1 or redis.call('EXISTS', P .. ':seq') == 0 then return 0 end
local keys = {}
for _, s in ipairs(STATUSES) do keys[#keys + 1] = k('status', s) end
return redis.call('ZUNIONSTORE', P .. ':all', #keys, unpack(keys))""",
    # RetryFlow {id}: a FAILED or CANCELLED flow, and its failed or cancelled children, due
    # now as their next attempt.
    "RetryFlow": r"""
local function retry(id)
  local f = get(id)
  if not f then return 'ERGON_NOTFOUND' end
  if f.status ~= 'FAILED' and f.status ~= 'CANCELLED' then return 'ERGON_STATE ' .. f.status end
  local new = copy(f)
  new.status, new.attempt, new.ready_at, new.updated_at = 'PENDING', tonumber(f.attempt) + 1, NOW, NOW
  new.owner, new.lease_expires, new.result, new.waiting_on, new.cancel_requested = nil, nil, nil, nil, nil
  new.suspect = nil
  save(new, f)
  event(id, 'retried', {attempt = new.attempt})
  for _, c in ipairs(redis.call('SMEMBERS', k('children', id))) do
    local child = get(c)
    if child and (child.status == 'FAILED' or child.status == 'CANCELLED') then retry(c) end
  end
end
local refused = retry(C[1])
if refused then return redis.error_reply(refused) end
return false""",
    # ForkFlow {id, new id, from position}: a copy with its completed steps before the position
    # -> 1, or 0 if the new id exists.
    "ForkFlow": r"""
local f = get(C[1])
if not f then return redis.error_reply('ERGON_NOTFOUND') end
if schedule(C[2], f.flow_type, f.args, f.version, nil, nil, {type = f.flow_type}) == 0 then return 0 end
redis.call('HSET', k('flow', C[2]), 'epoch', 1)  -- its first claim (epoch 2) replays the copied steps
local steps = redis.call('HGETALL', k('steps', C[1]))
for i = 1, #steps, 2 do
  if tonumber(steps[i]) < C[3] and cmsgpack.unpack(steps[i + 1])[2] == 'COMPLETE' then
    redis.call('HSET', k('steps', C[2]), steps[i], steps[i + 1])
  end
end
event(C[1], 'forked', {into = C[2], from_step = C[3]})
event(C[2], 'forked', {from = C[1], from_step = C[3]})
return 1""",
    # GetFlow {id}: -> its hash, packed (one reply element instead of one per field), or nil.
    "GetFlow": r"""
local raw = redis.call('HGETALL', k('flow', C[1]))
return #raw > 0 and cmsgpack.pack(raw)""",
    # LoadHistory {id, after, limit}: -> its events numbered after `after` (the list's index + 1).
    "LoadHistory": r"""
if C[3] <= 0 then return cmsgpack.pack({}) end
return cmsgpack.pack(redis.call('LRANGE', k('events', C[1]), C[2], C[2] + C[3] - 1))""",
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
    # PutRecord {key, value|nil, check, expected|nil}: set (or, value nil, delete) a record of
    # PyErgon's store API; with check, only if its value is expected now (nil: absent) -> 1 or 0.
    "PutRecord": r"""
if C[3] and redis.call('HGET', P .. ':records', C[1]) ~= (C[4] or false) then return 0 end
if C[2] then
  redis.call('HSET', P .. ':records', C[1], C[2])
  redis.call('ZADD', P .. ':recordkeys', 0, C[1])
else
  redis.call('HDEL', P .. ':records', C[1])
  redis.call('ZREM', P .. ':recordkeys', C[1])
end
return 1""",
    # ScanRecords {prefix}: -> the records whose key starts with prefix, by key: {{key, value}, ...} packed.
    "ScanRecords": r"""
local keys = redis.call('ZRANGEBYLEX', P .. ':recordkeys', '[' .. C[1], '[' .. C[1] .. '\255')
local out = {}
for i, key in ipairs(keys) do out[i] = {key, redis.call('HGET', P .. ':records', key)} end
return cmsgpack.pack(out)""",
    # MigrateFlows {to, from, ids}: move the live flows of version `from`, or among ids -> count.
    "MigrateFlows": r"""
local to, from, n = C[1], C[2], 0
for _, id in ipairs(C[3] or redis.call('SMEMBERS', k('version', from))) do
  local f = get(id)
  if f and not TERMINAL[f.status] and f.version ~= to and (not from or f.version == from) then
    local new = copy(f); new.version, new.updated_at = to, NOW; save(new, f)
    event(id, 'migrated', {from = f.version or cjson.null, to = to or cjson.null})
    n = n + 1
  end
end
return n""",
    # WaitingSignals {limit}: -> the first `limit` signal names some flow waits for, by name.
    "WaitingSignals": "return redis.call('ZRANGE', P .. ':waitnames', 0, C[1] - 1)",
    # ResetStore {}: delete every key of this store (every key under the prefix).
    "ResetStore": r"""
local pattern = string.gsub(P, '[%*%?%[%]\\]', '\\%0') .. ':*'
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
  cursor = r[1]
  if #r[2] > 0 then redis.call('DEL', unpack(r[2])) end
until cursor == '0'
return false""",
    # NextDue {types}: the earliest score at the head of each type's ready and lease sorted
    # sets and of each named queue's (a string, exact), or nil when they are all empty.
    "NextDue": r"""
local best
local function consider(key)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[2] and (not best or tonumber(r[2]) < tonumber(best)) then best = r[2] end
end
for _, t in ipairs(C[1] or redis.call('SMEMBERS', P .. ':types')) do
  consider(k('leases', t))
  consider(k('ready', t))
end
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do  -- named queues, of any type: a hint
  consider(k('qleases', q))
  for _, p in ipairs(redis.call('ZRANGE', k('qprios', q), 0, -1)) do consider(k('qready', q .. ':' .. p)) end
end
return best""",
    # DeclareQueue {name, concurrency, worker_concurrency, key_concurrency, rate_limit, rate_period,
    # replace}: store a queue's limits (false: none) -> 1, or 0 when kept (replace false).
    "DeclareQueue": r"""
local limits = cmsgpack.pack({C[2] or false, C[3] or false, C[4] or false, C[5] or false, C[6]})
redis.call('SADD', P .. ':queues', C[1])
if C[7] then redis.call('HSET', P .. ':qlimits', C[1], limits) return 1 end
return redis.call('HSETNX', P .. ':qlimits', C[1], limits)""",
    # QueueStats {limit}: -> packed {{name, limits or false, due, running, waiting, recent starts}, ...}
    # for the named queues, by name.
    "QueueStats": r"""
local names = redis.call('SMEMBERS', P .. ':queues')
table.sort(names)
local out = {}
for i = 1, math.min(#names, C[1]) do
  local q = names[i]
  local raw = redis.call('HGET', P .. ':qlimits', q)
  local L = raw and cmsgpack.unpack(raw)
  local due = queue_due(q)
  local running = tonumber(redis.call('HGET', P .. ':qrunning', q) or '0')
  local live = tonumber(redis.call('HGET', P .. ':qlive', q) or '0')
  local lapsed = redis.call('ZCOUNT', k('qleases', q), '-inf', NOW)
  local starts = 0
  if L and L[4] then starts = redis.call('ZCOUNT', k('qstarts', q), '(' .. (NOW - L[5]), '+inf') end
  out[i] = {q, raw or false, due, running, live - running - (due - lapsed), starts}
end
return cmsgpack.pack(out)""",
    # CountFlows {}: {status, count, ..., 'due', count} -> flows per status and runnable now.
    "CountFlows": r"""
local out, due = {}, 0
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do due = due + queue_due(q) end
for _, s in ipairs(STATUSES) do
  local n = redis.call('ZCARD', k('status', s))
  if n > 0 then out[#out + 1] = s; out[#out + 1] = n end
end
for _, t in ipairs(redis.call('SMEMBERS', P .. ':types')) do
  due = due + redis.call('ZCOUNT', k('ready', t), '-inf', NOW) + redis.call('ZCOUNT', k('leases', t), '-inf', NOW)
end
out[#out + 1] = 'due'; out[#out + 1] = due
local quarantined = redis.call('SCARD', P .. ':quarantined')
if quarantined > 0 then out[#out + 1] = 'quarantined'; out[#out + 1] = quarantined end
return out""",
    # RecordCrash {worker, exit_code, signal, cause, max_crashes, jitter, split}: record the crash
    # on each RUNNING flow of the worker (see storage/crashes.py, whose rules this follows):
    # blamed when it held only that flow; quarantined at max_crashes blamed crashes, else a
    # suspect in a group of 1/split of the flows held (never more than before), due after a
    # spread of up to `jitter` seconds (from a hash: a script's math.random repeats)
    # -> the flows' hashes, packed.
    "RecordCrash": r"""
local worker, max_crashes, jitter = C[1], C[5], C[6]
local held = {}
for _, id in ipairs(redis.call('SMEMBERS', k('owned', worker))) do
  local f = get(id)
  if f and f.owner == worker and f.status == 'RUNNING' then held[#held + 1] = f end
end
table.sort(held, function(a, b) return a.flow_id < b.flow_id end)
local out = {}
for i, f in ipairs(held) do
  local id, done, names = f.flow_id, {}, {}
  local raw = redis.call('HGETALL', k('steps', id))
  for j = 1, #raw, 2 do
    local s = cmsgpack.unpack(raw[j + 1])
    local position = tonumber(raw[j])
    names[position] = cmsgpack.unpack(s[1])[2]
    if s[2] == 'COMPLETE' then done[position] = true end
  end
  local position = 0
  while done[position] do position = position + 1 end
  local crashes = f.crashes and cmsgpack.unpack(f.crashes) or {}
  crashes[#crashes + 1] = {NOW, worker, C[4], C[2] or false, C[3] or false, position, names[position] or false,
                           #held == 1}
  local blamed = 0
  for _, c in ipairs(crashes) do if c[8] then blamed = blamed + 1 end end
  local new = copy(f)
  new.crashes, new.owner, new.lease_expires, new.updated_at = cmsgpack.pack(crashes), nil, nil, NOW
  if blamed >= max_crashes then
    new.status, new.ready_at, new.suspect = 'FAILED', nil, nil
    new.error = POISON .. cmsgpack.pack({id, new.crashes})
  else
    local spread = tonumber(string.sub(redis.sha1hex(id .. ':' .. NOW), 1, 8), 16) / 4294967295
    local size = math.max(1, math.ceil(#held / C[7]))
    if f.suspect then size = math.min(size, tonumber(f.suspect)) end
    new.status, new.ready_at, new.suspect = 'PENDING', NOW + jitter * spread, size
  end
  save(new, f)
  event(id, 'crashed', {worker = worker, cause = C[4], exit_code = C[2] or cjson.null, signal = C[3] or cjson.null,
                        position = position, step = names[position] or cjson.null, alone = #held == 1})
  if new.status == 'FAILED' then
    event(id, 'quarantined', {crashes = blamed})
    child_ended(new)
  end
  out[i] = redis.call('HGETALL', k('flow', id))
end
return cmsgpack.pack(out)""",
}


# After the bodies: ARGV[2] is the batch, a msgpack array {name, fields, name, fields, ...}, and
# ARGV[3] its number of commands. Each command runs in its place in a protected call: its error
# (a refusal, or a failure on its own content) is its reply alone and the commands after it still
# run, as they would in a MULTI/EXEC of one script per command. -> one reply per command.
_DISPATCH = r"""
local B, out = cmsgpack.unpack(ARGV[2]), {}
for i = 1, tonumber(ARGV[3]) do
  local ok, r = pcall(run, B[2 * i - 1], B[2 * i])
  if not ok then  -- a Redis error keeps its code (OOM, MISCONF, ...); a Lua error gets ERR
    local text = type(r) == 'table' and r.err or tostring(r)
    if not string.find(text, '^%u[%u_]* ') then text = 'ERR ' .. text end
    r = {err = text}
  elseif r == nil then r = false end
  out[i] = r
end
return out"""


def batch_script(preludes: str, bodies: dict[str, str]) -> str:
    """The one script of a batch: the preludes, run(name, C) running that command's body on its fields C, the dispatch.

    The bodies are branches of one function rather than a function each: a script's top level runs
    again on every call, and making a closure per command kind cost more than a small batch's work.
    """
    branches = "".join(f"{'if' if i == 0 else 'elseif'} name == '{name}' then\n{body}\n"
                       for i, (name, body) in enumerate(bodies.items()))
    return (f"{PRELUDE}{preludes}\nlocal function run(name, C)\n{branches}"
            f"else error('no such command: ' .. tostring(name))\nend\nend\n{_DISPATCH}")
