-- Buy one ticket, atomically. Every check comes before the first write.
-- KEYS[1] miaosha:{ITEM}:stock (string counter), KEYS[2] miaosha:{ITEM}:buyers (set)
-- ARGV[1] user id, ARGV[2] '1' = the buyers check was made outside, before (the
--   racy-duplicate-check flaw), '0' = here
-- Returns 0 bought, 1 sold out, 2 the user already bought, 3 the stock key is missing.
local stock_key, buyers_key = KEYS[1], KEYS[2]
local user, checked_outside = ARGV[1], ARGV[2] == '1'
if not checked_outside and redis.call('SISMEMBER', buyers_key, user) == 1 then
  return 2
end
local stock = tonumber(redis.call('GET', stock_key))
if not stock then return 3 end
if stock <= 0 then return 1 end
redis.call('DECR', stock_key)
redis.call('SADD', buyers_key, user)
return 0
