#!/usr/bin/env bash
# The Redis failover drill: runs scenarios/fault-failover.toml (asynchronous replication: must be
# FAILED, by counter_history) and scenarios/fault-failover-safe.toml (WAIT 1: must be PROVEN) N
# times each (default 10), printing per run the verdict, the checks that were false and how many
# acknowledged grants the failover lost (lost-writes.json), then a summary line per scenario.
# Usage: scripts/failover-drill.sh [N]   (GRAB_BENCH=path/to/grab-bench to pick the binary)
set -euo pipefail
n="${1:-10}"
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${GRAB_BENCH:-${CARGO_TARGET_DIR:-$here/target}/release/grab-bench}"
if [ ! -x "$bin" ]; then
  echo "failover-drill: no grab-bench at $bin (build it: cargo build --release -p grab-bench, or set GRAB_BENCH)" >&2
  exit 2
fi
out="$(mktemp -d -t grab-bench-drill-XXXXXX)"
keep=0
trap '[ "$keep" -eq 0 ] && rm -rf "$out"' EXIT
status=0
for sc in fault-failover fault-failover-safe; do
  want=FAILED
  [ "$sc" = fault-failover-safe ] && want=PROVEN
  good=0
  lost_all=""
  for i in $(seq 1 "$n"); do
    dir="$out/$sc-$i"
    "$bin" run "$here/scenarios/$sc.toml" --out "$dir" >"$dir.log" 2>&1 || true
    verdict="$(jq -r 'if .verdict == "false" then "FAILED" elif .verdict == "true" then "PROVEN" else (.verdict // "none") end' "$dir/audit.json" 2>/dev/null || echo none)"
    false_checks="$(jq -r '[.checks[] | select(.status == "false") | .name] | join(",")' "$dir/audit.json" 2>/dev/null || echo "?")"
    lost="$(jq -r '.lost' "$dir/lost-writes.json" 2>/dev/null || echo "?")"
    acked="$(jq -r '.acknowledged' "$dir/lost-writes.json" 2>/dev/null || echo "?")"
    ok=no
    if [ "$want" = FAILED ]; then
      [ "$verdict" = FAILED ] && [[ ",$false_checks," == *",counter_history,"* ]] && ok=yes
    else
      [ "$verdict" = PROVEN ] && ok=yes
    fi
    if [ "$ok" = yes ]; then good=$((good + 1)); else keep=1; echo "  kept for a look: $dir ($dir.log)"; fi
    lost_all="$lost_all $lost"
    echo "$sc run $i: $verdict (false: ${false_checks:-none}) · lost $lost of $acked acknowledged grants · as expected: $ok"
  done
  echo "$sc: $good of $n runs $want as expected · lost writes per run:$lost_all"
  [ "$good" -eq "$n" ] || status=1
done
exit "$status"
