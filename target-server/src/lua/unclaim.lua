-- Sharded stock: undo a claim (every shard tried was empty, or a shard step failed).
-- KEYS: buyers. ARGV: user. Returns the user's tickets now.
if ARGV[1] == '' then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]); return 0 end
return n
