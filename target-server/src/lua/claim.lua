-- Sharded stock, step 1 of 3 (slot {SALE}): claim the buyer before a ticket is taken from a
-- shard. The checks of buy.lua, in its order; the only write is the buyer's count, so that a
-- second request of the same user waiting on a shard is refused at the limit.
-- KEYS: inv, buyers, orders, reqs, nodes
-- ARGV: user ('' = anonymous), request_id ('' = none), node, flags ('o' off-by-one, 'u' no limit)
-- Returns {code, seq, order_id, expires_ms}:
--   0 claimed (take a shard ticket next), 2 replay of an earlier grant for the same request id,
--  -1 sold out, -2 the user already holds the limit, -7 this node's quota is used up,
--  -9 the sale does not exist.
local inv, buyers, orders, reqs, nodes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local user, rid, node, flags = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local total = tonumber(redis.call('HGET', inv, 'total'))
if not total then return {-9, 0, '', 0} end

if user ~= '' and rid ~= '' then
  local prev = redis.call('HGET', reqs, user .. ':' .. rid)
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

-- The sale's own count is a cheap early answer; the shards are the hard limit.
local sold = tonumber(redis.call('HGET', inv, 'sold')) or 0
if string.find(flags, 'o', 1, true) then
  if not (total >= sold) then return {-1, 0, '', 0} end
elseif sold >= total then
  return {-1, 0, '', 0}
end

local quota = tonumber(redis.call('HGET', nodes, node .. ':quota'))
local node_sold = tonumber(redis.call('HGET', nodes, node .. ':sold')) or 0
if quota and node_sold >= quota then return {-7, 0, '', 0} end

if user ~= '' then redis.call('HINCRBY', buyers, user, 1) end
return {0, 0, '', 0}
