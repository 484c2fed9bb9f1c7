-- One buy, atomically: KEYS[1] the stock (a string), KEYS[2] the users who bought (a set),
-- KEYS[3] the orders stream; ARGV[1] the user, ARGV[2] the order id, ARGV[3] the item.
-- Returns the tickets left after this sale, -1 sold out, -2 already bought.
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return -2
end
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then
  return -1
end
redis.call('DECR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'order', ARGV[2], 'user', ARGV[1], 'item', ARGV[3])
return left - 1
