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
# Each script's last line is its verdict; its whole output goes to stderr as it runs.
node="$(bash "$ROOT/scripts/bench-node.sh" | tee /dev/stderr | tail -n 1)"
cluster="$(bash "$ROOT/scripts/bench-cluster.sh" | tee /dev/stderr | tail -n 1)"
echo "== both ratios ($ROUNDS rounds each, medians)"
echo "  $node"
echo "  $cluster"
