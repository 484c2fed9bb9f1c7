-- Create a sale. KEYS: inv, buyers, orders, reqs, holds, nodes.
-- ARGV: total, per_user_limit, hold_ttl_ms, overwrite ('1' to replace this sale's own keys),
--       shards (stock shards; above 1 recorded as inv `shards`, the shard keys set up apart).
-- Returns 1 created, 0 refused because a key of this sale already exists.
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    if ARGV[4] ~= '1' then return 0 end
  end
end
if ARGV[4] == '1' then
  for _, k in ipairs(KEYS) do redis.call('DEL', k) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'sold', 0, 'seq', 0, 'held', 0, 'paid', 0,
  'released', 0, 'per_user_limit', ARGV[2], 'hold_ttl_ms', ARGV[3], 'created_ms', now)
if tonumber(ARGV[5] or '1') > 1 then redis.call('HSET', KEYS[1], 'shards', ARGV[5]) end
return 1
