-- Sharded stock, step 3 of 3 (slot {SALE}): record the grant of a ticket taken from shard k.
-- KEYS: inv, orders, reqs, nodes. ARGV: user, request_id, node, shard index.
-- Returns {1, seq, order_id, 0}.
local inv, orders, reqs, nodes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, rid, node, shard = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('HINCRBY', inv, 'seq', 1)
redis.call('HINCRBY', inv, 'sold', 1)
redis.call('HINCRBY', inv, 'paid', 1)
redis.call('HINCRBY', nodes, node .. ':sold', 1)
local oid = tostring(seq)
redis.call('HSET', orders, oid, cjson.encode({
  user = user, rid = rid, node = node, seq = seq, state = 'sold',
  created_ms = now, expires_ms = 0, shard = shard,
}))
if user ~= '' and rid ~= '' then redis.call('HSET', reqs, user .. ':' .. rid, oid) end
return {1, seq, oid, 0}
