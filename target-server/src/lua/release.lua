-- Release expired unpaid holds back to inventory, recording each release in its order.
-- KEYS: inv, orders, holds, buyers, nodes
-- ARGV: releasing node, early_ms (release holds expiring within this many ms: the early-release
--       flaw), max per call, flags ('d' = double-release flaw: keep the hold in the set and
--       release it again on every pass)
-- Returns a flat array: order_id, user, owner node, seq, ... for each hold released.
local inv, orders, holds, buyers, nodes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local releaser, early, max, flags = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local double = string.find(flags, 'd', 1, true)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', holds, '-inf', now + early, 'LIMIT', 0, max)
local out = {}
for _, oid in ipairs(due) do
  local rec = cjson.decode(redis.call('HGET', orders, oid))
  if rec.state == 'held' or double then
    if not double then redis.call('ZREM', holds, oid) end
    if rec.state == 'held' then redis.call('HINCRBY', inv, 'held', -1) end
    redis.call('HINCRBY', inv, 'sold', -1)
    redis.call('HINCRBY', inv, 'released', 1)
    redis.call('HINCRBY', nodes, rec.node .. ':sold', -1)
    redis.call('HINCRBY', nodes, rec.node .. ':returns', 1)
    if rec.user ~= '' then redis.call('HINCRBY', buyers, rec.user, -1) end
    rec.state = 'released'
    rec.released_ms = now
    rec.released_by = releaser
    redis.call('HSET', orders, oid, cjson.encode(rec))
    table.insert(out, oid)
    table.insert(out, rec.user)
    table.insert(out, rec.node)
    table.insert(out, rec.seq)
  else
    redis.call('ZREM', holds, oid)
  end
end
return out
