#!/usr/bin/env bash
# How fast is a reference node on its sold-out path, compared with a static nginx that returns
# the same JSON body? In a flash sale almost every request takes that path (the local pool is
# empty: answer "sold out" without Redis, still one stat-log line and the /stats counters).
#
#   bash scripts/bench-node.sh                       # 3 rounds of 10 s per server
#   DURATION=5 ROUNDS=5 bash scripts/bench-node.sh
#   NODE_THREADS=2 bash scripts/bench-node.sh        # the node's default runtime on 2 cores
#
# Both servers are driven by the same `wrk -t2 -cCONNECTIONS -dDURATIONs` (keep-alive), rounds
# interleaved (the order alternates), and the line to read is the median of the per-round
# node/nginx ratios: the machine is shared, so absolute figures drift between runs, ratios
# measured side by side much less. Each round also prints the CPU time each server process used
# per request (utime + stime from /proc, all threads), which does not depend on how much CPU the
# server got; the last line gives both ratios (for CPU per request, nginx/node, so that higher
# is better for the node too). The machine's other work shows in the rates far more than in
# the CPU figures: when the two ratios disagree, trust the CPU one, or run more rounds.
#
# Fairness: one core of server each, wrk on the other. nginx runs one worker process, which is
# single-threaded; the node runs with NODE_THREADS tokio worker threads, default 1
# (TOKIO_WORKER_THREADS, read by the node's multi-thread runtime builder), so neither server can
# use more than one core's worth of parallelism. On this 2-core machine wrk's two threads need
# about a core themselves: with PIN=1 (the default) each server process is pinned to CPU 1 and
# wrk to CPU 0 (taskset), so the server is what limits the rate, wrk's CPU is not counted against
# either server, and the scheduler does not bounce the three busy threads across two cores
# (unpinned, that bouncing cut both servers' rates to about a third here and made the ratio swing
# between 0.7 and 1.05 from round to round). A second node worker thread on one pinned core would
# only time-slice with the first; NODE_THREADS=2 PIN=0 shows the node's default runtime (one
# worker per core) competing with wrk for both cores, against the same one-worker nginx.
#
# Set-up, on 127.0.0.1 only, in a private temp directory; every process is stopped on exit,
# error or Ctrl-C: a private redis-server (no persistence); one node (`target-server`, the same
# `target_server::cli::serve_main` as `grab-bench serve`; NODE_BIN= to run another binary with
# the same flags, e.g. "grab-bench serve") with a stat log, whose 100 tickets are sold first;
# nginx with one worker. After the rounds the node is stopped (SIGTERM flushes its stat log) and
# the script checks that it answered the sold-out body and wrote exactly one stat-log line per
# request counted in /stats, so a faster node that changed its behaviour fails here.
set -euo pipefail

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-100}"
NODE_THREADS="${NODE_THREADS:-1}"
PIN="${PIN:-1}"
TICKETS=100
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_BIN="${NODE_BIN:-}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/grab-bench-node.XXXXXX")"
SOLD_OUT='{"code":-1,"msg":"sold out"}'
BUILD_PID=""
REDIS_PID=""
NODE_PID=""
NGINX_PID=""
LOAD_PID=""

# Stops what this script started, newest first: the load, then the servers (the node on SIGTERM
# finishes in-flight requests and flushes its stat log), then Redis.
cleanup() {
    local pid
    if [[ -n "$BUILD_PID" ]]; then
        kill -- "-$BUILD_PID" 2>/dev/null || true # cargo and its rustc children
        wait "$BUILD_PID" 2>/dev/null || true
    fi
    for pid in "$LOAD_PID" "$NGINX_PID" "$NODE_PID" "$REDIS_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "bench-node: interrupted" >&2; exit 130' INT TERM

fail() { echo "bench-node: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "bench-node: $1 is not installed (bash scripts/install-deps.sh)" >&2; exit 4; }; }
need redis-server
need redis-cli
need nginx
need wrk
need ab
need curl
need python3
need setsid
need taskset
[[ "$PIN" == 0 || "$PIN" == 1 ]] || { echo "bench-node: PIN must be 0 or 1" >&2; exit 4; }
if [[ "$PIN" == 1 ]] && (($(nproc) < 2)); then
    echo "bench-node: one CPU only, not pinning" >&2
    PIN=0
fi
for n in DURATION ROUNDS CONNECTIONS NODE_THREADS; do
    [[ "${!n}" =~ ^[0-9]+$ && "${!n}" -gt 0 ]] || { echo "bench-node: $n must be a positive integer" >&2; exit 4; }
done

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until WHAT PID CMD...: polls CMD every 20 ms for at most 10 s while PID lives.
wait_until() {
    local what="$1" pid="$2" i
    shift 2
    for ((i = 0; i < 500; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || fail "$what exited while starting"
        sleep 0.02
    done
    fail "$what not ready after 10 s"
}
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Command prefixes that pin (taskset execs the command, so $! is still the server's pid).
SERVER_CPU=1
LOAD_CPU=0
ON_SERVER_CPU=()
ON_LOAD_CPU=()
if [[ "$PIN" == 1 ]]; then
    ON_SERVER_CPU=(taskset -c "$SERVER_CPU")
    ON_LOAD_CPU=(taskset -c "$LOAD_CPU")
fi

# cpu_ticks PID: user + system CPU time of a process, all its threads, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ="$(getconf CLK_TCK)"

# node_stat FIELD: a number from the node's /stats.
node_stat() {
    curl -s --max-time 5 "$NODE_URL/stats" | python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [[ -z "$NODE_BIN" ]]; then
    NODE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/target-server"
    echo "== building target-server (release)"
    # Own process group, waited for in the background, so that Ctrl-C stops cargo and rustc.
    (cd "$ROOT" && exec setsid cargo build --release --quiet -p target-server --bin target-server) &
    BUILD_PID=$!
    wait "$BUILD_PID"
    BUILD_PID=""
fi

echo "== starting a private redis-server"
RPORT="$(free_port)"
mkdir -p "$WORK/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
    --logfile "$WORK/redis/redis.log" &
REDIS_PID=$!
wait_until redis-server "$REDIS_PID" redis-cli -p "$RPORT" ping

echo "== starting one reference node ($NODE_THREADS tokio worker thread(s)), selling its $TICKETS tickets"
# shellcheck disable=SC2086 # NODE_BIN may be "grab-bench serve"
TOKIO_WORKER_THREADS="$NODE_THREADS" "${ON_SERVER_CPU[@]}" $NODE_BIN --listen 127.0.0.1:0 \
    --redis "redis://127.0.0.1:$RPORT/0" --sale bench --node-id bench1 \
    --init-total "$TICKETS" --local-stock "$TICKETS" --stat-log "$WORK/stat.log" \
    >"$WORK/node.out" 2>"$WORK/node.err" &
NODE_PID=$!
node_address() { grep -q ' listening on http://' "$WORK/node.out"; }
wait_until "the node" "$NODE_PID" node_address
NODE_URL="$(sed -n 's/.* listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$WORK/node.out")"
# Sell the tickets out (anonymous GET buys), then check that the pool is empty.
ab -q -k -c 10 -n $((TICKETS * 2)) "$NODE_URL/buy/ticket" >/dev/null 2>&1 || fail "ab could not sell the tickets"
[[ "$(node_stat local_sold)" == "$TICKETS" && "$(node_stat local_remaining)" == 0 ]] ||
    fail "the node did not sell out: $(curl -s "$NODE_URL/stats")"
[[ "$(curl -s --max-time 5 "$NODE_URL/buy/ticket")" == "$SOLD_OUT" ]] || fail "the node does not answer sold out"

echo "== starting nginx (one worker) answering the same body"
NPORT="$(free_port)"
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 65;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        location / {
            default_type application/json;
            return 200 '$SOLD_OUT';
        }
    }
}
EOF
# master_process off: the one process is the worker, so its pid is the one whose CPU is read.
"${ON_SERVER_CPU[@]}" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" 2>/dev/null &
NGINX_PID=$!
wait_until nginx "$NGINX_PID" accepts "$NPORT"
NGINX_URL="http://127.0.0.1:$NPORT/buy/ticket"
[[ "$(curl -s --max-time 5 "$NGINX_URL")" == "$SOLD_OUT" ]] || fail "nginx does not answer the body"

# drive NAME PID URL: one wrk run; prints "requests/s  µs-of-server-CPU-per-request".
drive() {
    local name="$1" pid="$2" url="$3" before after out n rps
    before="$(cpu_ticks "$pid")"
    "${ON_LOAD_CPU[@]}" timeout $((DURATION + 30)) wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$url" >"$WORK/wrk.out" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID" || fail "wrk against $name failed: $(cat "$WORK/wrk.out")"
    LOAD_PID=""
    after="$(cpu_ticks "$pid")"
    out="$(cat "$WORK/wrk.out")"
    ! grep -q 'Non-2xx\|Socket errors' <<<"$out" || fail "wrk saw errors from $name: $out"
    n="$(awk '/ requests in / { print $1 }' <<<"$out")"
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    awk -v r="$rps" -v t=$((after - before)) -v hz="$HZ" -v n="$n" \
        'BEGIN { printf "%.0f %.2f\n", r, t * 1e6 / hz / n }'
}

pinning="unpinned"
[[ "$PIN" == 1 ]] && pinning="servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU"
echo "== wrk -t2 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, $pinning (node: sold-out path)"
printf '  %-6s %14s %14s %8s %14s %14s\n' round "nginx req/s" "node req/s" ratio "nginx µs/req" "node µs/req"
ratios=()
node_all=()
nginx_all=()
node_cpu_all=()
nginx_cpu_all=()
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then
        nginx_res="$(drive nginx "$NGINX_PID" "$NGINX_URL")"
        node_res="$(drive node "$NODE_PID" "$NODE_URL/buy/ticket")"
    else
        node_res="$(drive node "$NODE_PID" "$NODE_URL/buy/ticket")"
        nginx_res="$(drive nginx "$NGINX_PID" "$NGINX_URL")"
    fi
    read -r nginx_rps nginx_cpu <<<"$nginx_res"
    read -r node_rps node_cpu <<<"$node_res"
    ratio="$(awk -v a="$node_rps" -v b="$nginx_rps" 'BEGIN { printf "%.3f", a / b }')"
    ratios+=("$ratio")
    node_all+=("$node_rps")
    nginx_all+=("$nginx_rps")
    node_cpu_all+=("$node_cpu")
    nginx_cpu_all+=("$nginx_cpu")
    printf '  %-6s %14s %14s %8s %14s %14s\n' "$round" "$nginx_rps" "$node_rps" "$ratio" "$nginx_cpu" "$node_cpu"
done
printf '  %-6s %14s %14s %8s %14s %14s\n' median \
    "$(printf '%s\n' "${nginx_all[@]}" | median)" "$(printf '%s\n' "${node_all[@]}" | median)" \
    "$(printf '%s\n' "${ratios[@]}" | median)" \
    "$(printf '%s\n' "${nginx_cpu_all[@]}" | median)" "$(printf '%s\n' "${node_cpu_all[@]}" | median)"

echo "== checking the node's behaviour"
requests="$(node_stat requests)"
kill "$NODE_PID"
wait "$NODE_PID" || fail "the node exited with an error: $(cat "$WORK/node.err")"
NODE_PID=""
# One header line per start, then one line per request: TICKETS "ok", the rest "sold_out".
lines="$(grep -vc '^#' "$WORK/stat.log")"
ok="$(awk -F'\t' '!/^#/ && $6 == "ok"' "$WORK/stat.log" | wc -l)"
sold_out="$(awk -F'\t' '!/^#/ && $6 == "sold_out"' "$WORK/stat.log" | wc -l)"
last_seq="$(tail -n 1 "$WORK/stat.log" | cut -f3)"
seqs="$(awk -F'\t' '!/^#/ { print $3 }' "$WORK/stat.log" | sort -un | wc -l)"
echo "   /stats requests $requests; stat.log: $lines lines ($ok ok, $sold_out sold_out), $seqs distinct local_seq"
((lines == requests && ok == TICKETS && sold_out == requests - TICKETS && seqs == requests)) ||
    fail "the stat log does not hold exactly one line per request (last line's local_seq $last_seq)"
cpu_ratio="$(awk -v a="$(printf '%s\n' "${nginx_cpu_all[@]}" | median)" \
    -v b="$(printf '%s\n' "${node_cpu_all[@]}" | median)" 'BEGIN { printf "%.3f", a / b }')"
echo "bench-node: median node/nginx ratio $(printf '%s\n' "${ratios[@]}" | median) (requests/s);" \
    "$cpu_ratio (nginx/node CPU per request)"
