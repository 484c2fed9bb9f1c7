-- Buy one ticket of one item, atomically. Every check comes before the first write.
-- KEYS[1] seckill:{ITEM}:stock (string counter), KEYS[2] seckill:{ITEM}:buyers (set)
-- ARGV[1] user id
-- ARGV[2] flags: 'g' = the unguarded-decr flaw (no stock check), 'b' = the no-buyers-set flaw,
--   'c' = the racy-duplicate-check flaw (the buyers check was made outside, before; not here)
-- Returns {code, remaining}: 0 bought (remaining = stock after the DECR), 1 sold out,
-- 2 the user already bought, 3 the stock key is missing (the item is not set up).
local stock_key, buyers_key = KEYS[1], KEYS[2]
local user, flags = ARGV[1], ARGV[2]
local unguarded = string.find(flags, 'g', 1, true) ~= nil
local use_buyers = string.find(flags, 'b', 1, true) == nil
local checked_outside = string.find(flags, 'c', 1, true) ~= nil

if use_buyers and not checked_outside and redis.call('SISMEMBER', buyers_key, user) == 1 then
  return {2, 0}
end
local stock = tonumber(redis.call('GET', stock_key))
if not stock then return {3, 0} end
if stock <= 0 and not unguarded then return {1, stock} end

-- checks done; writes follow
local remaining = redis.call('DECR', stock_key)
if use_buyers then redis.call('SADD', buyers_key, user) end
return {0, remaining}
