-- Set up one item's sale: stock = ARGV[1], no buyers.
-- KEYS[1] shop:{ITEM}:stock, KEYS[2] shop:{ITEM}:buyers
-- ARGV[1] initial stock, ARGV[2] '1' = overwrite existing keys, '0' = refuse if any exists
-- Returns 1 when set up, 0 when refused (nothing was written).
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
return 1
