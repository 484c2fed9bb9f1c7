-- Atomically grant one ticket. Every check comes before the first write.
-- KEYS: inv, buyers, orders, reqs, holds, nodes
-- ARGV: user ('' = anonymous), request_id ('' = none), node, hold_ttl_ms (0 = sell outright),
--       flags: 'o' = off-by-one flaw, 'u' = no-user-limit flaw
-- Returns {code, seq, order_id, expires_ms}:
--   1 granted, 2 replay of an earlier grant for the same request id,
--  -1 sold out, -2 the user already holds the limit, -7 this node's quota is used up,
--  -9 the sale does not exist.
local inv, buyers, orders, reqs, holds, nodes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local user, rid, node, ttl, flags = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]

local total = tonumber(redis.call('HGET', inv, 'total'))
if not total then return {-9, 0, '', 0} end

local req_field = nil
if user ~= '' and rid ~= '' then
  req_field = user .. ':' .. rid
  local prev = redis.call('HGET', reqs, req_field)
  if prev then
    local rec = cjson.decode(redis.call('HGET', orders, prev))
    return {2, rec.seq, prev, rec.expires_ms or 0}
  end
end

if user ~= '' and not string.find(flags, 'u', 1, true) then
  local limit = tonumber(redis.call('HGET', inv, 'per_user_limit')) or 1
  local owned = tonumber(redis.call('HGET', buyers, user)) or 0
  if owned >= limit then return {-2, 0, '', 0} end
end

local sold = tonumber(redis.call('HGET', inv, 'sold')) or 0
if string.find(flags, 'o', 1, true) then
  -- the article's check: sells while total >= sold, i.e. total + 1 tickets
  if not (total >= sold) then return {-1, 0, '', 0} end
elseif sold >= total then
  return {-1, 0, '', 0}
end

local quota = tonumber(redis.call('HGET', nodes, node .. ':quota'))
local node_sold = tonumber(redis.call('HGET', nodes, node .. ':sold')) or 0
if quota and node_sold >= quota then return {-7, 0, '', 0} end

-- checks done; writes follow
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('HINCRBY', inv, 'seq', 1)
redis.call('HINCRBY', inv, 'sold', 1)
redis.call('HINCRBY', nodes, node .. ':sold', 1)
if user ~= '' then redis.call('HINCRBY', buyers, user, 1) end
local oid = tostring(seq)
local expires = 0
local state = 'sold'
if ttl > 0 then
  expires = now + ttl
  state = 'held'
  redis.call('HINCRBY', inv, 'held', 1)
  redis.call('ZADD', holds, expires, oid)
else
  redis.call('HINCRBY', inv, 'paid', 1)
end
redis.call('HSET', orders, oid, cjson.encode({
  user = user, rid = rid, node = node, seq = seq, state = state,
  created_ms = now, expires_ms = expires,
}))
if req_field then redis.call('HSET', reqs, req_field, oid) end
return {1, seq, oid, expires}
