-- Take this node's released holds back into its local pool. KEYS: nodes. ARGV: node.
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':returns')) or 0
if n > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':returns', -n) end
return n
