#!/usr/bin/env bash
# Both speed ratios of issue 16, three interleaved rounds each with the median:
#   1. the reference node's sold-out path against static nginx, both driven by wrk
#      (scripts/bench-node.sh);
#   2. grab-bench in closed loop through the built-in cluster against wrk on the same running
#      cluster (scripts/bench-cluster.sh).
#
#   bash scripts/bench-speed.sh              # DURATION, ROUNDS, CONNECTIONS pass through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROUNDS="${ROUNDS:-3}"
OUT="$(mktemp "${TMPDIR:-/tmp}/grab-bench-speed.XXXXXX")"
trap 'rm -f "$OUT"' EXIT
# Each script's output is shown as it runs; its last line is its verdict.
bash "$ROOT/scripts/bench-node.sh" | tee "$OUT"
node="$(tail -n 1 "$OUT")"
bash "$ROOT/scripts/bench-cluster.sh" | tee "$OUT"
cluster="$(tail -n 1 "$OUT")"
echo "== both ratios ($ROUNDS rounds each, medians)"
echo "  $node"
echo "  $cluster"
