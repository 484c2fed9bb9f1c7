-- Sharded stock, step 2 of 3 (the shard's own slot {SALE#k}): take one ticket from one shard.
-- KEYS: the shard's hash (total, sold). Returns 1 taken, 0 the shard is empty, -9 no such shard.
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if not total then return -9 end
local sold = tonumber(redis.call('HGET', KEYS[1], 'sold')) or 0
if sold >= total then return 0 end
redis.call('HINCRBY', KEYS[1], 'sold', 1)
return 1
