-- Queue one buy of one item, atomically. Every check comes before the first write.
-- KEYS[1] shop:{ITEM}:stock (string counter), KEYS[2] shop:{ITEM}:buyers (set),
-- KEYS[3] shop:orders (stream)
-- ARGV[1] user id, ARGV[2] item id, ARGV[3] ticket id
-- Returns {code, remaining}: 0 queued (remaining = stock after the DECR), 1 sold out,
-- 2 the user already bought, 3 the stock key is missing (the item is not set up).
local stock_key, buyers_key, orders_key = KEYS[1], KEYS[2], KEYS[3]
local user, item, ticket = ARGV[1], ARGV[2], ARGV[3]

if redis.call('SISMEMBER', buyers_key, user) == 1 then
  return {2, 0}
end
local stock = tonumber(redis.call('GET', stock_key))
if not stock then return {3, 0} end
if stock <= 0 then return {1, stock} end

-- checks done; writes follow
local remaining = redis.call('DECR', stock_key)
redis.call('SADD', buyers_key, user)
redis.call('XADD', orders_key, '*', 'user', user, 'item', item, 'ticket', ticket)
return {0, remaining}
