-- Pay a hold. KEYS: inv, orders, holds. ARGV: order_id, user ('' = anyone), flags ('p' = pay-after-expiry flaw)
-- Returns {code, seq, node}: 1 paid, 2 already paid, -5 expired or released, -6 no such order.
local inv, orders, holds = KEYS[1], KEYS[2], KEYS[3]
local oid, user, flags = ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('HGET', orders, oid)
if not raw then return {-6, 0, ''} end
local rec = cjson.decode(raw)
if user ~= '' and rec.user ~= user then return {-6, 0, ''} end
if rec.state == 'paid' or rec.state == 'sold' then return {2, rec.seq, rec.node} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local late = rec.state ~= 'held' or now >= rec.expires_ms
if late and not string.find(flags, 'p', 1, true) then return {-5, rec.seq, rec.node} end
-- the pay-after-expiry flaw marks a released hold paid without taking the ticket back
if rec.state == 'held' then
  redis.call('HINCRBY', inv, 'held', -1)
  redis.call('ZREM', holds, oid)
end
redis.call('HINCRBY', inv, 'paid', 1)
rec.state = 'paid'
rec.paid_ms = now
redis.call('HSET', orders, oid, cjson.encode(rec))
return {1, rec.seq, rec.node}
