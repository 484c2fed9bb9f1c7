#!/usr/bin/env bash
# How fast does grab-bench drive a million users in closed loop through the built-in cluster,
# compared with wrk against the same running cluster? The generator shares the machine's cores
# with the cluster (nginx, four nodes, redis), so its CPU per request decides its rate.
#
#   bash scripts/bench-cluster.sh                    # 3 interleaved rounds of 10 s per tool
#   bash scripts/bench-speed.sh                      # this and scripts/bench-node.sh, both ratios
#   DURATION=5 ROUNDS=5 bash scripts/bench-cluster.sh
#   PERF=1 bash scripts/bench-cluster.sh             # also instructions per request (perf stat)
#   GRAB=/tmp/grab-bench.old bash scripts/bench-cluster.sh   # another build of grab-bench
#
# Set-up, on 127.0.0.1 only, in a private temp directory: `grab-bench cluster up` with a
# scenario shaped like scenarios/1m.toml (10,000 tickets, four nodes weighted 1:2:3:4 behind
# one nginx worker, a private redis-server). A short wrk warm-up sells the tickets, so that
# every measured round takes the path a million buyers mostly take: sold out. Then ROUNDS
# rounds, the order rotating, each of:
#   wrk        wrk -t2 -c100 with a Lua script that sends the reference protocol's buy
#              (src/describe/presets/reference.toml `[buy]`): GET /buy/ticket?user_id=U&
#              request_id=U-1, U unique per request (a range of its own per round and thread);
#   wrk-fixed  wrk -t2 -c100 without a script, one fixed URL (user 1): wrk at its fastest (no
#              Lua per request), the same sold-out path on the nodes; the stricter reference;
#   grab-bench `grab-bench run SCENARIO --segment 0/1 --attach DIR`: the load only (no audit),
#              closed loop, 100 connections, a million users (ids unique per round), for
#              DURATION s, one ledger row per request as in every run.
# Each round prints the rates, grab-bench's ratio to each wrk, and the CPU time each generator used per 1000
# requests: for grab-bench its engine threads during the load (sampled from /proc) and the
# whole process (set-up, saving the ledger); for wrk the whole process. CPU per request does
# not depend on how much of the machine the generator got, so it is the steadier figure when
# the machine is busy. The last lines are the medians. The cluster is torn down at the end,
# on error and on Ctrl-C.
set -euo pipefail

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-100}"
WARMUP="${WARMUP:-3}"
PERF="${PERF:-0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# GRAB=path runs that grab-bench binary (e.g. a copy of an older build, to compare) instead of
# building this tree's.
GRAB="${GRAB:-}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/grab-bench-cluster.XXXXXX")"
BUILD_PID=""
CLUSTER_PID=""
LOAD_PID=""

# Stops what this script started: the load, then the cluster (`cluster up` stops nginx, the
# nodes and redis on SIGTERM).
cleanup() {
    local pid
    if [[ -n "$BUILD_PID" ]]; then
        kill -- "-$BUILD_PID" 2>/dev/null || true # cargo and its rustc children
        wait "$BUILD_PID" 2>/dev/null || true
    fi
    if [[ -n "$LOAD_PID" ]] && kill -0 "$LOAD_PID" 2>/dev/null; then
        kill "$LOAD_PID" 2>/dev/null || true
        wait "$LOAD_PID" 2>/dev/null || true
    fi
    if [[ -n "$CLUSTER_PID" ]] && kill -0 "$CLUSTER_PID" 2>/dev/null; then
        kill "$CLUSTER_PID" 2>/dev/null || true
        wait "$CLUSTER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    return 0
}
trap cleanup EXIT
trap 'echo "bench-cluster: interrupted" >&2; exit 130' INT TERM

fail() { echo "bench-cluster: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "bench-cluster: $1 is not installed (bash scripts/install-deps.sh)" >&2; exit 4; }; }
need redis-server
need nginx
need wrk
need curl
need python3
need setsid
for n in DURATION ROUNDS CONNECTIONS WARMUP; do
    [[ "${!n}" =~ ^[0-9]+$ && "${!n}" -gt 0 ]] || { echo "bench-cluster: $n must be a positive integer" >&2; exit 4; }
done
# Instructions need hardware counters, which a virtual machine often does not offer (perf then
# says "<not supported>").
if [[ "$PERF" == 1 ]] && ! perf stat -x, -e instructions true 2>&1 >/dev/null | grep -q '^[0-9]'; then
    echo "bench-cluster: perf stat cannot count instructions here; PERF=1 ignored" >&2
    PERF=0
fi

# median FORMAT: the median of the numbers on stdin, printed with the printf FORMAT.
median() {
    sort -g | awk -v f="$1" '{ v[NR] = $1 }
        END { printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

if [[ -z "$GRAB" ]]; then
    GRAB="${CARGO_TARGET_DIR:-$ROOT/target}/release/grab-bench"
    echo "== building grab-bench (release)"
    # Own process group, waited for in the background, so that Ctrl-C stops cargo and rustc.
    (cd "$ROOT" && exec setsid cargo build --release --quiet --bin grab-bench) &
    BUILD_PID=$!
    wait "$BUILD_PID"
    BUILD_PID=""
fi
[[ -x "$GRAB" ]] || { echo "bench-cluster: $GRAB is not an executable" >&2; exit 4; }

# The cluster's scenario, and per round the load's (closed loop, a million users whose ids
# start after the round's offset; same sale, so `--attach` accepts it).
scenario() {
    local offset="$1"
    cat <<EOF
name = "bench-cluster"

[sale]
id = "bench"
tickets = 10000

[cluster]
nodes = 4
weights = [1, 2, 3, 4]
buffer = 0.1
balancer = "nginx"
nginx_workers = 1

[users]
count = 1000000
id_offset = $offset

[load]
mode = "closed"
connections = $CONNECTIONS
duration = "${DURATION}s"

[timeouts]
request = "5s"
settle = "5s"
max_duration = "$((DURATION + 60))s"
EOF
}
scenario 0 >"$WORK/cluster.toml"

echo "== starting the cluster (grab-bench cluster up)"
"$GRAB" cluster up "$WORK/cluster.toml" --dir "$WORK/cluster" >"$WORK/cluster.out" 2>"$WORK/cluster.err" &
CLUSTER_PID=$!
for ((i = 0; i < 1500; i++)); do
    grep -q '^cluster up: ' "$WORK/cluster.out" 2>/dev/null && break
    kill -0 "$CLUSTER_PID" 2>/dev/null || fail "cluster up exited: $(cat "$WORK/cluster.err")"
    sleep 0.02
done
grep -q '^cluster up: ' "$WORK/cluster.out" || fail "the cluster is not up after 30 s"
URL="$(sed -n 's/^cluster up: \(http:\/\/[^ ]*\) .*/\1/p' "$WORK/cluster.out")"
[[ "$URL" =~ ^http://127\.0\.0\.1:[0-9]+/buy/ticket$ ]] || fail "unexpected cluster address: $URL"
BASE="${URL%/buy/ticket}"
echo "   $(head -n 1 "$WORK/cluster.out")"

# The wrk script: unique users per request; the base of the ids comes from the environment
# (per round), each thread a range of its own.
cat >"$WORK/buy.lua" <<'EOF'
local threads = 0
function setup(thread)
    thread:set("base", tonumber(os.getenv("WRK_USER_BASE")) + threads * 10000000)
    threads = threads + 1
end
local n = 0
function request()
    n = n + 1
    local u = base + n
    return wrk.format("GET", "/buy/ticket?user_id=" .. u .. "&request_id=" .. u .. "-1")
end
EOF

# run_wrk BASE SECONDS [fixed]: one wrk run, with the Lua script (unique users from BASE) or,
# given "fixed", without a script: the same URL every time, one user, which is wrk's fastest
# way (no Lua per request) and the same sold-out path on the nodes. Leaves "requests seconds
# cpu_seconds" in $WORK/wrk.res.
run_wrk() {
    local base="$1" secs="$2" how=(-s "$WORK/buy.lua" "$BASE")
    [[ "${3:-}" == fixed ]] && how=("$BASE/buy/ticket?user_id=1&request_id=1-1")
    WRK_USER_BASE="$base" python3 "$WORK/rusage.py" "$WORK/wrk.cpu" \
        timeout --foreground $((secs + 30)) \
        wrk -t2 -c"$CONNECTIONS" -d"${secs}s" "${how[@]}" >"$WORK/wrk.out" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID" || fail "wrk failed: $(cat "$WORK/wrk.out")"
    LOAD_PID=""
    ! grep -q 'Socket errors' "$WORK/wrk.out" || fail "wrk saw socket errors: $(cat "$WORK/wrk.out")"
    ! grep -q 'Non-2xx' "$WORK/wrk.out" || fail "wrk saw non-2xx answers: $(cat "$WORK/wrk.out")"
    awk -v cpu="$(cat "$WORK/wrk.cpu")" '/ requests in [0-9.]+s,/ { sub(/s,$/, "", $4); print $1, $4, cpu; found = 1 }
        END { exit !found }' "$WORK/wrk.out" >"$WORK/wrk.res" || fail "cannot read wrk's summary: $(cat "$WORK/wrk.out")"
}

# rusage.py OUT CMD...: runs CMD, writes its user+system CPU seconds (children included) to
# OUT, exits with its status.
cat >"$WORK/rusage.py" <<'EOF'
import resource, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
try:
    rc = p.wait()
except KeyboardInterrupt:
    p.terminate()
    rc = p.wait()
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write("%.3f\n" % (r.ru_utime + r.ru_stime))
sys.exit(rc if rc >= 0 else 128 - rc)
EOF

# engine_cpu.py OUT CMD...: runs CMD and samples the CPU time of the engine threads (named
# engine-N: src/engine/mod.rs runs the load on them) of CMD and its descendants every 20 ms
# from /proc; writes "engine_seconds process_seconds" to OUT (process: CMD and its descendants,
# user + system, whole run). A thread's last 20 ms before it ends may be missed.
cat >"$WORK/engine_cpu.py" <<'EOF'
import os, resource, subprocess, sys, time
hz = os.sysconf("SC_CLK_TCK")
p = subprocess.Popen(sys.argv[2:])
seen = {}
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
def tree(pid):
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        for t in os.listdir("/proc/%d/task" % q) if os.path.isdir("/proc/%d/task" % q) else []:
            todo.extend(int(c) for c in read("/proc/%d/task/%s/children" % (q, t)).split())
    return out
def sample():
    for q in tree(p.pid):
        try:
            tids = os.listdir("/proc/%d/task" % q)
        except OSError:
            continue
        for t in tids:
            s = read("/proc/%d/task/%s/stat" % (q, t))
            if not s:
                continue
            name = s[s.index("(") + 1:s.rindex(")")]
            if name.startswith("engine-"):
                fields = s[s.rindex(")") + 2:].split()
                seen[(q, t)] = int(fields[11]) + int(fields[12])
try:
    while p.poll() is None:
        sample()
        time.sleep(0.02)
except KeyboardInterrupt:
    p.terminate()
rc = p.wait()
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write("%.3f %.3f\n" % (sum(seen.values()) / hz, r.ru_utime + r.ru_stime))
sys.exit(rc if rc >= 0 else 128 - rc)
EOF

# run_grab ROUND: one grab-bench agent run; leaves "requests seconds engine_cpu process_cpu
# [instructions]" in $WORK/grab.res.
run_grab() {
    local round="$1" out="$WORK/agent-$1" perf=()
    scenario $((round * 10000000)) >"$WORK/load-$round.toml"
    [[ "$PERF" == 1 ]] && perf=(perf stat -x, -e instructions:u,instructions:k -o "$WORK/perf.out" --)
    python3 "$WORK/engine_cpu.py" "$WORK/grab.cpu" "${perf[@]}" \
        timeout --foreground $((DURATION + 120)) \
        "$GRAB" run "$WORK/load-$round.toml" --segment 0/1 --attach "$WORK/cluster" --out "$out" \
        >"$WORK/grab.out" 2>"$WORK/grab.err" &
    LOAD_PID=$!
    wait "$LOAD_PID" || fail "grab-bench run failed: $(tail -n 5 "$WORK/grab.err")"
    LOAD_PID=""
    # "segment 0/1 of bench-cluster: 123456 requests from 123456 users in 10.0 s; ..."
    local res
    res="$(sed -n 's/^segment 0\/1 of [^:]*: \([0-9]*\) requests from [0-9]* users in \([0-9.]*\) s;.*/\1 \2/p' "$WORK/grab.out")"
    [[ -n "$res" ]] || fail "cannot read grab-bench's summary: $(cat "$WORK/grab.out")"
    local instr=""
    if [[ "$PERF" == 1 ]]; then
        instr="$(awk -F, '$3 ~ /^instructions/ { s += $1 } END { print s + 0 }' "$WORK/perf.out")"
    fi
    echo "$res $(cat "$WORK/grab.cpu") $instr" >"$WORK/grab.res"
    rm -rf "$out"
}

echo "== warm-up: wrk for ${WARMUP} s sells the 10,000 tickets"
run_wrk 900000000 "$WARMUP"
answer="$(curl -s --max-time 5 "$BASE/buy/ticket?user_id=999999999&request_id=999999999-1")"
[[ "$answer" == *'"code":-1'* ]] || fail "the cluster is not sold out after the warm-up: $answer"

echo "== closed loop, $CONNECTIONS connections, ${DURATION} s per tool per round, $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   wrk: Lua script, unique users; wrk-fixed: one fixed URL (no Lua); CPU: seconds per 1000 requests"
printf '  %-6s %10s %10s %10s %7s %7s   %-8s %-9s %-11s %s\n' round "wrk/s" "grab/s" "fixed/s" ratio r-fixed \
    "CPU:wrk" "wrk-fixed" "grab-engine" "grab-process"
declare -A all=()
add() { all[$1]="${all[$1]:-} $2"; }
for ((round = 1; round <= ROUNDS; round++)); do
    # The order rotates, round to round.
    case $((round % 3)) in
        1) order=(wrk grab fixed) ;;
        2) order=(grab fixed wrk) ;;
        0) order=(fixed wrk grab) ;;
    esac
    for tool in "${order[@]}"; do
        case "$tool" in
            wrk)
                run_wrk $((1000000000 + round * 100000000)) "$DURATION"
                read -r w_req w_s w_cpu <"$WORK/wrk.res"
                ;;
            fixed)
                run_wrk 0 "$DURATION" fixed
                read -r f_req f_s f_cpu <"$WORK/wrk.res"
                ;;
            grab)
                run_grab "$round"
                read -r g_req g_s g_eng g_proc g_instr <"$WORK/grab.res"
                ;;
        esac
    done
    read -r w_rps g_rps f_rps ratio ratio_f w_k f_k g_ek g_pk < <(awk \
        -v wr="$w_req" -v ws="$w_s" -v wc="$w_cpu" -v fr="$f_req" -v fs="$f_s" -v fc="$f_cpu" \
        -v gr="$g_req" -v gs="$g_s" -v ge="$g_eng" -v gp="$g_proc" 'BEGIN {
            printf "%.0f %.0f %.0f %.3f %.3f %.4f %.4f %.4f %.4f\n", wr / ws, gr / gs, fr / fs,
                (gr / gs) / (wr / ws), (gr / gs) / (fr / fs),
                wc * 1000 / wr, fc * 1000 / fr, ge * 1000 / gr, gp * 1000 / gr }')
    add wrk "$w_rps"; add grab "$g_rps"; add fixed "$f_rps"; add ratio "$ratio"; add ratio_f "$ratio_f"
    add w_k "$w_k"; add f_k "$f_k"; add g_ek "$g_ek"; add g_pk "$g_pk"
    extra=""
    if [[ -n "${g_instr:-}" ]]; then
        ipr="$(awk -v i="$g_instr" -v r="$g_req" 'BEGIN { printf "%.0f", i / r }')"
        add instr "$ipr"
        extra="  $ipr instructions/request (grab process)"
    fi
    printf '  %-6s %10s %10s %10s %7s %7s   %-8s %-9s %-11s %s%s\n' "$round" "$w_rps" "$g_rps" "$f_rps" \
        "$ratio" "$ratio_f" "$w_k" "$f_k" "$g_ek" "$g_pk" "$extra"
done
med() { tr ' ' '\n' <<<"${all[$1]}" | sed '/^$/d' | median "$2"; }
extra=""
[[ -n "${all[instr]:-}" ]] && extra="  $(med instr %.0f) instructions/request (grab process)"
printf '  %-6s %10s %10s %10s %7s %7s   %-8s %-9s %-11s %s%s\n' median "$(med wrk %.0f)" "$(med grab %.0f)" \
    "$(med fixed %.0f)" "$(med ratio %.3f)" "$(med ratio_f %.3f)" "$(med w_k %.4f)" "$(med f_k %.4f)" \
    "$(med g_ek %.4f)" "$(med g_pk %.4f)" "$extra"
echo "bench-cluster: median grab-bench/wrk ratio $(med ratio %.3f) (wrk with unique users), $(med ratio_f %.3f) (wrk with one fixed URL); CPU s per 1000 requests: grab-bench engine threads $(med g_ek %.4f) (process $(med g_pk %.4f)), wrk $(med w_k %.4f), wrk-fixed $(med f_k %.4f); load $(cut -d' ' -f1-3 /proc/loadavg)"
