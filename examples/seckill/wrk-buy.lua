-- wrk script: POST a buy as user 1 (token from users.csv) with a requestId body.
-- wrk -t2 -c100 -d5s -s examples/seckill/wrk-buy.lua http://ADDR/api/seckill/item1
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer 3fa423a52debf3203bc0e335"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"requestId":"bench"}'
