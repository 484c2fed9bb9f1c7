#!/usr/bin/env bash
# Soak: one reference node under steady load for DURATION seconds. Prints the node's RSS every
# SAMPLE seconds (with the requests served in each interval, to show the load stayed steady), the
# errors, and a last line
#
#   soak: RSS start X MB, end Y MB, growth Z %, errors N
#
# and exits 1 when there were errors or the RSS grew by more than MAX_GROWTH percent.
#
#   bash scripts/soak.sh                          # 300 s, 32 connections
#   DURATION=60 CONNECTIONS=16 bash scripts/soak.sh
#
# Set-up, on 127.0.0.1 only, everything in a private temp directory, every process stopped on
# exit, error or Ctrl-C: a private redis-server (no persistence); one `grab-bench serve` node in
# reservation mode, so holds expire, the node's reaper releases them and the tickets come back to
# its pool: the sale never ends, and the buy, release, take-back and stat-log paths all stay busy
# for the whole run; wrk sends GET /buy/ticket with user ids cycling through a pool of USERS, so
# the load is a steady mix of grants, "already bought" and "sold out". The node's local pool
# (LOCAL_STOCK, default twice TICKETS) never empties, so every request makes the Redis round trip
# (the path with the most moving parts: connection manager, timeouts, in-flight futures); with
# LOCAL_STOCK=TICKETS most requests take the no-Redis "sold out" fast path instead.
#
# "RSS start" is the first sample under load (t = SAMPLE s), once the allocator and connection
# buffers have warmed up; the idle RSS before the load is printed too. Errors are wrk's non-2xx
# answers and socket errors plus the node's `redis_errors` (/stats).
set -euo pipefail

DURATION="${DURATION:-300}"
CONNECTIONS="${CONNECTIONS:-32}"
SAMPLE="${SAMPLE:-10}"
TICKETS="${TICKETS:-2000}"
HOLD_TTL="${HOLD_TTL:-2s}"
USERS="${USERS:-5000}"
LOCAL_STOCK="${LOCAL_STOCK:-$((TICKETS * 2))}"
MAX_GROWTH="${MAX_GROWTH:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GRAB="${CARGO_TARGET_DIR:-$ROOT/target}/release/grab-bench"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/grab-bench-soak.XXXXXX")"
BUILD_PID=""
REDIS_PID=""
NODE_PID=""
WRK_PID=""
SLEEP_PID=""

# Stops what this script started, newest first: the load, then the node (SIGTERM: it finishes
# in-flight requests and flushes its stat log), then Redis.
cleanup() {
    local pid
    if [[ -n "$BUILD_PID" ]]; then
        kill -- "-$BUILD_PID" 2>/dev/null || true # cargo and its rustc children
        wait "$BUILD_PID" 2>/dev/null || true
    fi
    for pid in "$SLEEP_PID" "$WRK_PID" "$NODE_PID" "$REDIS_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "soak: interrupted" >&2; exit 130' INT TERM

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "soak: $1 is not installed (sudo apt-get install -y $2)" >&2
        exit 4
    }
}
need redis-server redis-server
need redis-cli redis-tools
need wrk wrk
need curl curl
need python3 python3
need setsid util-linux
for n in DURATION CONNECTIONS SAMPLE TICKETS USERS LOCAL_STOCK MAX_GROWTH; do
    [[ "${!n}" =~ ^[0-9]+$ && "${!n}" -gt 0 ]] || { echo "soak: $n must be a positive integer" >&2; exit 4; }
done

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Interruptible sleep: the INT/TERM trap runs at once instead of after the sleep.
pause() {
    sleep "$1" &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
    SLEEP_PID=""
}

rss_mb() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$NODE_PID/status"
}

# node_stat FIELD: a number from the node's /stats.
node_stat() {
    curl -s --max-time 5 "$BASE/stats" | python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"
}

echo "== building grab-bench (release)"
# In its own process group, in the background and waited for, so that Ctrl-C stops cargo and
# its rustc children at once.
(cd "$ROOT" && exec setsid cargo build --release --quiet --bin grab-bench) &
BUILD_PID=$!
wait "$BUILD_PID"
BUILD_PID=""

echo "== starting a private redis-server"
RPORT="$(free_port)"
mkdir -p "$WORK/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
    --logfile "$WORK/redis/redis.log" &
REDIS_PID=$!
for ((i = 0; i < 100; i++)); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    kill -0 "$REDIS_PID" 2>/dev/null || { echo "soak: redis-server exited" >&2; exit 5; }
    pause 0.05
done
redis-cli -p "$RPORT" ping >/dev/null

echo "== starting one reference node (reservation mode: $TICKETS tickets, holds of $HOLD_TTL, local pool $LOCAL_STOCK)"
"$GRAB" serve --listen 127.0.0.1:0 --redis "redis://127.0.0.1:$RPORT/0" --sale soak \
    --node-id soak1 --init-total "$TICKETS" --local-stock "$LOCAL_STOCK" --hold-ttl "$HOLD_TTL" \
    --stat-log "$WORK/stat.log" >"$WORK/node.out" 2>"$WORK/node.err" &
NODE_PID=$!
BASE=""
for ((i = 0; i < 200; i++)); do
    BASE="$(sed -n 's/.* listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$WORK/node.out")"
    [[ -n "$BASE" ]] && break
    kill -0 "$NODE_PID" 2>/dev/null || { echo "soak: the node exited: $(cat "$WORK/node.err")" >&2; exit 5; }
    pause 0.05
done
[[ -n "$BASE" ]] || { echo "soak: the node did not print its address within 10 s" >&2; exit 5; }
curl -sf --max-time 5 "$BASE/healthz" >/dev/null
echo "   node pid $NODE_PID on $BASE, redis on 127.0.0.1:$RPORT"

# wrk: user ids cycle through the pool; per-status and per-answer counts are summed over threads.
cat >"$WORK/soak.lua" <<EOF
local users = $USERS
local threads = {}
function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end
function init(args)
  n = offset
  s2, s4, s503, s5, other, grabbed, already, soldout = 0, 0, 0, 0, 0, 0, 0, 0
end
function request()
  n = n + 1
  return wrk.format("GET", "/buy/ticket?user_id=u" .. (n % users))
end
function response(status, headers, body)
  if status >= 200 and status < 300 then
    s2 = s2 + 1
    if string.find(body, '"code":1,', 1, true) then grabbed = grabbed + 1
    elseif string.find(body, '"code":-2,', 1, true) then already = already + 1
    elseif string.find(body, '"code":-1,', 1, true) then soldout = soldout + 1 end
  elseif status == 503 then s503 = s503 + 1
  elseif status >= 500 then s5 = s5 + 1
  elseif status >= 400 then s4 = s4 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = {s2 = 0, s4 = 0, s503 = 0, s5 = 0, other = 0, grabbed = 0, already = 0, soldout = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  local e = summary.errors
  io.write(string.format("wrk-counts: 2xx %d 4xx %d 503 %d 5xx %d other %d grabbed %d already %d soldout %d\n",
    t.s2, t.s4, t.s503, t.s5, t.other, t.grabbed, t.already, t.soldout))
  io.write(string.format("wrk-errors: connect %d read %d write %d timeout %d status %d\n",
    e.connect, e.read, e.write, e.timeout, e.status))
end
EOF

IDLE_RSS="$(rss_mb)"
echo "== steady load: wrk -t1 -c$CONNECTIONS -d${DURATION}s, users cycling over $USERS ids"
echo "   idle RSS before the load: $IDLE_RSS MB"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$WORK/soak.lua" \
    "$BASE/buy/ticket" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!

printf '   %6s  %9s  %10s  %8s  %12s\n' "t (s)" "RSS (MB)" "requests/s" "released" "redis_errors"
START_RSS=""
END_RSS=""
T0=$(date +%s)
last_requests="$(node_stat requests)"
last_t=0
next=$SAMPLE
while ((next <= DURATION)); do
    # Sleep to the next multiple of SAMPLE since the start, so the samples do not drift.
    now=$(($(date +%s) - T0))
    ((next > now)) && pause $((next - now))
    kill -0 "$NODE_PID" 2>/dev/null || { echo "soak: the node died: $(cat "$WORK/node.err")" >&2; exit 1; }
    t=$(($(date +%s) - T0))
    rss="$(rss_mb)"
    requests="$(node_stat requests)"
    rate=$(((requests - last_requests) / (t > last_t ? t - last_t : 1)))
    printf '   %6d  %9s  %10d  %8s  %12s\n' "$t" "$rss" "$rate" "$(node_stat released)" "$(node_stat redis_errors)"
    [[ -z "$START_RSS" ]] && START_RSS="$rss"
    END_RSS="$rss"
    last_requests="$requests"
    last_t="$t"
    next=$((next + SAMPLE))
done
wait "$WRK_PID" || true
WRK_PID=""

echo "== wrk"
sed 's/^/   /' "$WORK/wrk.out"
grep -q '^wrk-counts:' "$WORK/wrk.out" || { echo "soak: wrk printed no summary" >&2; exit 1; }
read -r _ s2 _ s4 _ s503 _ s5 _ other _ grabbed _ already _ soldout \
    < <(grep '^wrk-counts:' "$WORK/wrk.out" | cut -d' ' -f2-)
read -r _ e_connect _ e_read _ e_write _ e_timeout _ _ \
    < <(grep '^wrk-errors:' "$WORK/wrk.out" | cut -d' ' -f2-)
redis_errors="$(node_stat redis_errors)"
echo "== node /stats"
curl -s --max-time 5 "$BASE/stats" | sed 's/^/   /'
echo
echo "   stat.log: $(du -h "$WORK/stat.log" | cut -f1), redis used_memory: $(redis-cli -p "$RPORT" info memory | tr -d '\r' | sed -n 's/^used_memory_human://p')"

non2xx=$((s4 + s503 + s5 + other))
socket_errors=$((e_connect + e_read + e_write + e_timeout))
errors=$((non2xx + socket_errors + redis_errors))
echo "== summary"
echo "   answers: $s2 2xx ($grabbed grabbed, $already already bought, $soldout sold out), $s4 4xx, $s503 503, $s5 other 5xx, $other other"
echo "   errors: $non2xx non-2xx ($s5 5xx other than 503, $s503 503), $socket_errors socket errors, $redis_errors redis_errors"
growth="$(awk -v a="$START_RSS" -v b="$END_RSS" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')"
echo "soak: RSS start $START_RSS MB, end $END_RSS MB, growth $growth %, errors $errors"
if ((errors > 0)) || awk -v g="$growth" -v m="$MAX_GROWTH" 'BEGIN { exit !(g > m) }'; then
    echo "soak: FAILED (errors, or RSS growth over $MAX_GROWTH %)" >&2
    exit 1
fi
