#!/usr/bin/env bash
# Benchmarks the load generator itself: how many requests/s grab-bench drives through a static
# nginx compared with wrk, ab and oha (if installed), in one run on this machine.
#
#   bash scripts/bench-generator.sh            # 10 s per tool
#   DURATION=5 CONNECTIONS=50 bash scripts/bench-generator.sh
#   ROUNDS=3 bash scripts/bench-generator.sh   # interleave the tools 3 times, report medians
#   BENCH_DESCRIBED=1 bash scripts/bench-generator.sh   # also a described system (examples/seckill)
#   BENCH_STATIC=0 BENCH_DESCRIBED=1 ROUNDS=3 bash scripts/bench-generator.sh   # only that one
#
# The machine is shared by the generator and nginx (and anything else running): compare
# figures from one run only, and prefer ROUNDS=3 on a machine that is not otherwise idle.
#
# Everything runs on 127.0.0.1. nginx gets its own temp prefix (config, pid, logs) and is stopped
# on exit, error or Ctrl-C. nginx runs one worker: the machine's cores are shared with the
# generator under test, and every tool sees the same server.
set -euo pipefail

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-1}"
CONNECTIONS="${CONNECTIONS:-100}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GRAB="${GRAB:-$ROOT/target/release/grab-bench}"   # GRAB=path: another build, to compare before and after
WORK="$(mktemp -d "${TMPDIR:-/tmp}/grab-bench-gen.XXXXXX")"
NGINX_PID=""

cleanup() {
    if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null 2>&1 || { echo "bench-generator: $1 is not installed" >&2; exit 4; }; }
need nginx
need wrk
need ab
need chrt

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (bounded) until something accepts on 127.0.0.1:$1.
wait_port() {
    local port="$1" i
    for ((i = 0; i < 100; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "bench-generator: nothing listening on 127.0.0.1:$port after 5 s" >&2
    return 1
}

echo "== building grab-bench (release)"
(cd "$ROOT" && cargo build --release --quiet --bin grab-bench)

start_nginx() {
    local port="$1"
    mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
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
        listen 127.0.0.1:$port;
        location / {
            default_type application/json;
            return 200 '{"code":1,"msg":"ticket grabbed"}';
        }
    }
}
EOF
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" &
    NGINX_PID=$!
    wait_port "$port"
}

# record NAME VALUE: remembers one round's requests/s of a tool.
declare -A ALL=()
record() { ALL[$1]="${ALL[$1]:-} $2"; printf '  %-12s %12.0f requests/s\n' "$1" "$2"; }

# Median of each tool's rounds.
declare -A RPS=()
summarise() {
    local tool
    for tool in "${!ALL[@]}"; do
        RPS[$tool]="$(tr ' ' '\n' <<<"${ALL[$tool]}" | sed '/^$/d' | sort -g |
            awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
    done
    if ((ROUNDS > 1)); then
        echo "== medians over $ROUNDS rounds"
        for tool in wrk ab oha grab-bench grab-hyper described-wrk described-grab described-wrk-batch described-oha; do
            [[ -n "${RPS[$tool]:-}" ]] && printf '  %-12s %12.0f requests/s\n' "$tool" "${RPS[$tool]}"
        done
    fi
    return 0
}

ratio() {
    local a="${RPS[$1]:-}" b="${RPS[$2]:-}"
    if [[ -n "$a" && -n "$b" ]]; then
        printf '  %s / %s = %.2f\n' "$1" "$2" "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')"
    fi
}

bench_static_nginx() {
    local port url out
    port="$(free_port)"
    url="http://127.0.0.1:$port/"
    start_nginx "$port"
    echo "== static nginx on $url: ${DURATION}s per tool, $CONNECTIONS connections, keep-alive"
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
    ((ROUNDS > 1)) && echo "-- round $round"

    out="$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$url")"
    record wrk "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"

    # ab: -t then -n, so the explicit -n (not ab's implied 50000) bounds the run.
    out="$(ab -q -k -c"$CONNECTIONS" -t"$DURATION" -n 100000000 "$url" 2>/dev/null)"
    record ab "$(awk '/^Requests per second:/ { print $4 }' <<<"$out")"

    if command -v oha >/dev/null 2>&1; then
        out="$(oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui "$url")"
        record oha "$(awk '/Requests\/sec:/ { print $2 }' <<<"$out")"
    else
        echo "  (oha not installed: skipped)"
    fi

    out="$("$GRAB" ab -k -c "$CONNECTIONS" -t "$DURATION" -n 2000000000 "$url" 2>/dev/null)"
    record grab-bench "$(awk '/^Requests per second:/ { print $4 }' <<<"$out")"

    # The same engine over hyper's client, for reference (EnginePlan.client = Hyper).
    out="$("$GRAB" ab -k -c "$CONNECTIONS" -t "$DURATION" -n 2000000000 --hyper "$url" 2>/dev/null)"
    record grab-hyper "$(awk '/^Requests per second:/ { print $4 }' <<<"$out")"
    done

    summarise
    echo "== ratios"
    ratio grab-bench wrk
    ratio grab-bench oha
    ratio grab-bench ab
    ratio grab-hyper wrk

    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
}

# ---------------------------------------------------------------------------------------------
# Part 2: a reference node of the built-in cluster (private redis-server + `grab-bench serve`),
# after its sale has sold out: the path a million buyers mostly take. wrk and `grab-bench ab -k`
# drive the same node in the same run. Runs only with BENCH_CLUSTER=1.
REDIS_PID=""
NODE_PID=""
stop_cluster() {
    [[ -n "$NODE_PID" ]] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
    [[ -n "$REDIS_PID" ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    NODE_PID=""
    REDIS_PID=""
    return 0
}
bench_cluster() {
    need redis-server
    trap 'stop_cluster; cleanup' EXIT
    local rport nport url out
    rport="$(free_port)"
    mkdir -p "$WORK/redis"
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
        --logfile "$WORK/redis/redis.log" &
    REDIS_PID=$!
    wait_port "$rport"
    nport="$(free_port)"
    "$GRAB" serve --listen "127.0.0.1:$nport" --redis "redis://127.0.0.1:$rport/0" --sale bench \
        --init-total 100 --local-stock 100 --stat-log "$WORK/stat.log" >/dev/null &
    NODE_PID=$!
    wait_port "$nport"
    url="http://127.0.0.1:$nport/buy/ticket"
    curl -s "$url" >/dev/null 2>&1 || true
    "$GRAB" ab -k -c 10 -n 200 "$url" >/dev/null 2>&1   # sell the 100 tickets out first
    echo "== reference node (sold out) on $url: ${DURATION}s per tool, $CONNECTIONS connections"
    out="$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$url")"
    record node-wrk "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    out="$("$GRAB" ab -k -c "$CONNECTIONS" -t "$DURATION" -n 2000000000 "$url" 2>/dev/null)"
    record node-grab "$(awk '/^Requests per second:/ { print $4 }' <<<"$out")"
    summarise
    echo "== ratio"
    ratio node-grab node-wrk
    stop_cluster
}
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# Part 3: a described system (examples/seckill, the service of scenarios/described.toml) after its
# sale has sold out. `grab-bench ab -k --system scenarios/described.toml` sends the described
# request (bearer token per user, JSON body with a request id) and classifies every answer by the
# description's rules (JSON envelope `code`); wrk sends one user's request of the same shape. Both
# drive the same service in the same run, each with two threads and $CONNECTIONS connections (wrk
# -t2, grab-bench --threads 2: ab's default of half the cores suits a one-worker nginx, not a
# service whose runtime has a worker per core). Runs only with BENCH_DESCRIBED=1.
SECKILL_PID=""
stop_described() {
    [[ -n "$SECKILL_PID" ]] && kill "$SECKILL_PID" 2>/dev/null && wait "$SECKILL_PID" 2>/dev/null
    [[ -n "$REDIS_PID" ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    SECKILL_PID=""
    REDIS_PID=""
    return 0
}
bench_described() {
    need redis-server
    trap 'stop_described; cleanup' EXIT
    (cd "$ROOT" && cargo build --release --quiet -p example-seckill)
    local rport sport base token round w g b ratios="" batch_ratios=""
    rport="$(free_port)"
    mkdir -p "$WORK/redis-d"
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis-d" \
        --logfile "$WORK/redis-d/redis.log" &
    REDIS_PID=$!
    wait_port "$rport"
    sport="$(free_port)"
    "$ROOT/target/release/seckill" --listen "127.0.0.1:$sport" --redis "redis://127.0.0.1:$rport/0" \
        --users "$ROOT/examples/seckill/users.csv" --item item1=200 >/dev/null &
    SECKILL_PID=$!
    wait_port "$sport"
    base="http://127.0.0.1:$sport/"
    # Sell the 200 tickets out first, through the description.
    "$GRAB" ab -k -c 10 -n 1000 --system "$ROOT/scenarios/described.toml" "$base" >/dev/null 2>&1
    token="$(awk -F, 'NR == 2 { print $2 }' "$ROOT/examples/seckill/users.csv")"
    cat >"$WORK/described.lua" <<LUA
wrk.method = "POST"
wrk.path = "/api/seckill/item1"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"requestId":"1-1"}'
LUA
    # wrk, after an optional prefix: `described_wrk chrt -b 0` runs it as a batch thread (what
    # grab-bench's engine threads are in a closed loop), which shows how much of grab-bench's
    # lead is its scheduling policy and how much its code.
    described_wrk() {
        "$@" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/described.lua" "$base" |
            awk '/^Requests\/sec:/ { print $2 }'
    }
    # oha (when installed) sends the same one user's request, as wrk does.
    described_oha() {
        oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui -m POST \
            -H "Authorization: Bearer $token" -H "content-type: application/json" \
            -d '{"requestId":"1-1"}' "${base}api/seckill/item1" |
            awk '/Requests\/sec:/ { print $2 }'
    }
    over() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
    described_grab() {
        "$GRAB" ab -k -c "$CONNECTIONS" -t "$DURATION" -n 2000000000 --threads 2 \
            --system "$ROOT/scenarios/described.toml" "$base" 2>/dev/null |
            awk '/^Requests per second:/ { print $4 }'
    }
    echo "== described seckill (sold out) on $base: ${DURATION}s per tool, $CONNECTIONS connections"
    for ((round = 1; round <= ROUNDS; round++)); do
        ((ROUNDS > 1)) && echo "-- round $round"
        # Odd rounds start with wrk, even rounds with grab-bench, so that a machine getting
        # slower or faster during the run does not favour the tool that always goes first.
        if ((round % 2)); then
            w="$(described_wrk)"
            g="$(described_grab)"
            b="$(described_wrk chrt -b 0)"
        else
            b="$(described_wrk chrt -b 0)"
            g="$(described_grab)"
            w="$(described_wrk)"
        fi
        record described-wrk "$w"
        record described-grab "$g"
        record described-wrk-batch "$b"
        if command -v oha >/dev/null 2>&1; then
            record described-oha "$(described_oha)"
        fi
        ratios="$ratios $(over "$g" "$w")"
        batch_ratios="$batch_ratios $(over "$g" "$b")"
    done
    echo "== described-grab / described-wrk per round:$ratios"
    echo "== described-grab / described-wrk-batch per round:$batch_ratios"
    summarise
    echo "== ratio"
    ratio described-grab described-wrk
    ratio described-grab described-wrk-batch
    ratio described-grab described-oha
    stop_described
}
# ---------------------------------------------------------------------------------------------

if [[ "${BENCH_STATIC:-1}" == 1 ]]; then
    bench_static_nginx
fi
if [[ "${BENCH_CLUSTER:-0}" == 1 ]]; then
    bench_cluster
fi
if [[ "${BENCH_DESCRIBED:-0}" == 1 ]]; then
    bench_described
fi
