-- Register a node's quota and tell it how much of it is still unsold.
-- KEYS: inv, nodes. ARGV: node, quota.
-- Returns {code, remaining, shards}: 1 ok, -9 the sale does not exist; shards is the sale's
-- stock shard count (1 when unsharded).
-- Pending returns are folded in: remaining = quota - live sales, so they are cleared here.
local inv, nodes = KEYS[1], KEYS[2]
local node, quota = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', inv) == 0 then return {-9, 0, 1} end
redis.call('HSET', nodes, node .. ':quota', quota)
redis.call('HSET', nodes, node .. ':returns', 0)
local sold = tonumber(redis.call('HGET', nodes, node .. ':sold')) or 0
local remaining = quota - sold
if remaining < 0 then remaining = 0 end
return {1, remaining, tonumber(redis.call('HGET', inv, 'shards')) or 1}
