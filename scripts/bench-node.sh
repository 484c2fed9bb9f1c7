#!/usr/bin/env bash
# How fast is a reference node on its sold-out path, compared with a static nginx that returns
# the same JSON body? In a flash sale almost every request takes that path (the local pool is
# empty: answer "sold out" without Redis, still one stat-log line and the /stats counters).
#
#   bash scripts/bench-node.sh                       # 3 rounds of 10 s per server
#   DURATION=5 ROUNDS=5 bash scripts/bench-node.sh
#   NODE_THREADS=2 bash scripts/bench-node.sh        # the node's default runtime on 2 cores
#   PIN=1 bash scripts/bench-node.sh                 # servers on CPU 1, wrk on CPU 0
#   SLICES=10 bash scripts/bench-node.sh             # each round's 10 s in 1 s alternating slices
#
# Both servers are driven by the same `wrk -t2 -cCONNECTIONS -dDURATIONs` (keep-alive), rounds
# interleaved (the order alternates), and the line to read is the median of the per-round
# node/nginx ratios: the machine is shared, so absolute figures drift between runs, ratios
# measured side by side much less. SLICES=N cuts each server's DURATION of a round into N wrk
# runs that alternate with the other server's, so that a burst of other work on the machine
# lands on both servers alike; a round's figures are then its slices' totals.
#
# Each round also prints the CPU time each server process used per request (utime + stime from
# /proc, all threads), which does not depend on how much CPU the server got; the last line gives
# both ratios (for CPU per request nginx/node, so that higher is better for the node too). The
# machine's other work shows in the rates far more than in the CPU figures: when the two ratios
# disagree, trust the CPU one, or run more rounds or slices.
#
# Fairness: one worker each. nginx runs one worker process, which is single-threaded; the node
# runs with NODE_THREADS tokio worker threads, default 1 (TOKIO_WORKER_THREADS, read by the
# node's multi-thread runtime builder), so that neither server has more parallelism than the
# other. On this 2-core machine wrk's two threads need about a core themselves, so neither
# server could use two cores anyway; a second node worker would mostly compete with wrk (and
# nginx could then ask for a second worker too). NODE_THREADS=2 shows the node's default runtime
# here (one worker per core) against the same one-worker nginx.
#
# Where the threads run: with PIN=0 (the default) the scheduler places wrk and the server on
# both cores as it likes, the same for both servers, and a server's rate depends on what its
# answers cost wrk too (nginx's have a larger head). PIN=1 pins each server process to CPU 1
# and wrk to CPU 0 (taskset): one core of server each, wrk's CPU kept apart; the server is then
# what limits the rate, unless wrk's one core is (nginx's larger answers cost wrk more: pinned,
# nginx used about 0.93 of its core where the node used all of its).
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
PIN="${PIN:-0}"
SLICES="${SLICES:-1}"
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
for n in DURATION ROUNDS CONNECTIONS NODE_THREADS SLICES; do
    [[ "${!n}" =~ ^[0-9]+$ && "${!n}" -gt 0 ]] || { echo "bench-node: $n must be a positive integer" >&2; exit 4; }
done
((DURATION % SLICES == 0)) || { echo "bench-node: DURATION must be a multiple of SLICES" >&2; exit 4; }

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
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || fail "process $1 is gone"; }
HZ="$(getconf CLK_TCK)"

# node_stat FIELD: a number from the node's /stats.
node_stat() {
    curl -s --max-time 5 "$NODE_URL/stats" | python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"
}

# median FORMAT: the median of the numbers on stdin, printed with the printf FORMAT.
median() {
    sort -g | awk -v f="$1" '{ v[NR] = $1 }
        END { printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

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

# drive NAME PID URL SECONDS: one wrk run; leaves "requests seconds server-CPU-ticks" in
# $WORK/drive.out. Runs in this shell (not in a $(...) subshell), so that LOAD_PID is the one
# cleanup stops on Ctrl-C; `timeout --foreground` stays in our process group, so Ctrl-C reaches
# wrk too.
drive() {
    local name="$1" pid="$2" url="$3" secs="$4" before after
    before="$(cpu_ticks "$pid")"
    "${ON_LOAD_CPU[@]}" timeout --foreground $((secs + 30)) \
        wrk -t2 -c"$CONNECTIONS" -d"${secs}s" "$url" >"$WORK/wrk.out" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID" || fail "wrk against $name failed: $(cat "$WORK/wrk.out")"
    LOAD_PID=""
    after="$(cpu_ticks "$pid")"
    ! grep -q 'Non-2xx\|Socket errors' "$WORK/wrk.out" || fail "wrk saw errors from $name: $(cat "$WORK/wrk.out")"
    # "123456 requests in 10.01s, 15.98MB read"
    awk -v t=$((after - before)) '/ requests in [0-9.]+s,/ { sub(/s,$/, "", $4); print $1, $4, t; found = 1 }
        END { exit !found }' "$WORK/wrk.out" >"$WORK/drive.out" || fail "cannot read wrk's summary: $(cat "$WORK/wrk.out")"
}

pinning="unpinned"
[[ "$PIN" == 1 ]] && pinning="servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU"
slicing=""
((SLICES > 1)) && slicing=", each in $SLICES alternating slices of $((DURATION / SLICES)) s"
echo "== wrk -t2 -c$CONNECTIONS, ${DURATION} s per server per round$slicing; $ROUNDS rounds; $pinning"
printf '  %-6s %14s %14s %8s %14s %14s\n' round "nginx req/s" "node req/s" ratio "nginx µs/req" "node µs/req"
ratios=()
node_all=()
nginx_all=()
node_cpu_all=()
nginx_cpu_all=()
for ((round = 1; round <= ROUNDS; round++)); do
    # Totals of the round's slices: requests, seconds, CPU ticks.
    declare -A total=([nginx]="0 0 0" [node]="0 0 0")
    for ((slice = 1; slice <= SLICES; slice++)); do
        # The order alternates, slice to slice and round to round.
        if (((round + slice) % 2)); then order=(node nginx); else order=(nginx node); fi
        for server in "${order[@]}"; do
            if [[ "$server" == nginx ]]; then
                drive nginx "$NGINX_PID" "$NGINX_URL" $((DURATION / SLICES))
            else
                drive node "$NODE_PID" "$NODE_URL/buy/ticket" $((DURATION / SLICES))
            fi
            res="$(cat "$WORK/drive.out")"
            total[$server]="$(awk -v a="${total[$server]}" -v b="$res" \
                'BEGIN { split(a, x, " "); split(b, y, " "); print x[1] + y[1], x[2] + y[2], x[3] + y[3] }')"
        done
    done
    # rate = requests / seconds; CPU per request in µs = ticks / HZ / requests.
    read -r nginx_rps nginx_cpu < <(awk -v hz="$HZ" -v a="${total[nginx]}" \
        'BEGIN { split(a, x, " "); printf "%.0f %.2f\n", x[1] / x[2], x[3] * 1e6 / hz / x[1] }')
    read -r node_rps node_cpu < <(awk -v hz="$HZ" -v a="${total[node]}" \
        'BEGIN { split(a, x, " "); printf "%.0f %.2f\n", x[1] / x[2], x[3] * 1e6 / hz / x[1] }')
    ratio="$(awk -v a="$node_rps" -v b="$nginx_rps" 'BEGIN { printf "%.3f", a / b }')"
    ratios+=("$ratio")
    node_all+=("$node_rps")
    nginx_all+=("$nginx_rps")
    node_cpu_all+=("$node_cpu")
    nginx_cpu_all+=("$nginx_cpu")
    printf '  %-6s %14s %14s %8s %14s %14s\n' "$round" "$nginx_rps" "$node_rps" "$ratio" "$nginx_cpu" "$node_cpu"
done
median_ratio="$(printf '%s\n' "${ratios[@]}" | median %.3f)"
median_nginx_cpu="$(printf '%s\n' "${nginx_cpu_all[@]}" | median %.2f)"
median_node_cpu="$(printf '%s\n' "${node_cpu_all[@]}" | median %.2f)"
printf '  %-6s %14s %14s %8s %14s %14s\n' median \
    "$(printf '%s\n' "${nginx_all[@]}" | median %.0f)" "$(printf '%s\n' "${node_all[@]}" | median %.0f)" \
    "$median_ratio" "$median_nginx_cpu" "$median_node_cpu"

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
cpu_ratio="$(awk -v a="$median_nginx_cpu" -v b="$median_node_cpu" 'BEGIN { printf "%.3f", a / b }')"
echo "bench-node: median node/nginx ratio $median_ratio (requests/s); $cpu_ratio (nginx/node CPU per request)"
