-- Compensation after the database refused an order: KEYS[1] the stock, KEYS[2] the users set;
-- ARGV[1] the user. The ticket goes back on sale and the user may buy again.
redis.call('INCR', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
