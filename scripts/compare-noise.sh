#!/usr/bin/env bash
# compare-noise.sh: how often `grab-bench compare` calls noise a regression. TRIES times, 2 x
# ROUNDS smoke runs (ROUNDS a side, same scenario, same binary) are compared with --max-regression; any
# regression is a false one. Then one side's summaries get half their throughput (a planted
# regression), which must be flagged. Prints the counts; exits 1 on a false regression or a
# missed planted one. The rounds are interleaved (a1 b1 a2 b2 …), so a drift of the machine's
# load (another build starting) falls on both sides alike instead of looking like a regression.
#
#   scripts/compare-noise.sh [TRIES=10] [LIMIT=10] [SCENARIO=scenarios/smoke.toml] [ROUNDS=3]
set -euo pipefail
tries=${1:-10}
limit=${2:-10}
scenario=${3:-scenarios/smoke.toml}
rounds=${4:-3}
bin=${GRAB_BENCH:-${CARGO_TARGET_DIR:-target}/debug/grab-bench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# side DIR LETTER: the side's round folders, comma-separated.
side() {
  local r list=""
  for r in $(seq 1 "$rounds"); do list="$list${list:+,}$1/$2$r"; done
  echo "$list"
}
# compare TRY OUTPUT: the a rounds against the b rounds; prints the exit code.
compare_try() {
  local d="$work/$1" rc=0
  "$bin" compare "$(side "$d" a)" "$(side "$d" b)" --max-regression "$limit" \
    --out "$d/compare.html" >"$d/$2" 2>&1 || rc=$?
  echo "$rc"
}
false_regressions=0
planted_missed=0
for t in $(seq 1 "$tries"); do
  for r in $(seq 1 "$rounds"); do
    for side in a b; do
      "$bin" run "$scenario" --out "$work/$t/$side$r" >/dev/null 2>&1 || true
    done
  done
  d="$work/$t"
  rc=$(compare_try "$t" compare.txt)
  if [ "$rc" -eq 2 ]; then
    false_regressions=$((false_regressions + 1))
    echo "try $t: FALSE REGRESSION"; grep REGRESSION "$d/compare.txt"
  else
    echo "try $t: $(tail -2 "$d/compare.txt" | head -1)"
  fi
  # The planted halving: b's rounds with half their throughput.
  for r in $(seq 1 "$rounds"); do
    python3 - "$d/b$r/summary.json" <<'PY'
import json, sys
p = sys.argv[1]; s = json.load(open(p)); s["requests"]["rps"] /= 2; json.dump(s, open(p, "w"))
PY
  done
  rc=$(compare_try "$t" planted.txt)
  if [ "$rc" -ne 2 ]; then
    planted_missed=$((planted_missed + 1)); echo "try $t: planted halving MISSED"
  else
    echo "try $t: planted: $(grep -o 'requests/s worse by [^;]*' "$d/planted.txt")"
  fi
done
echo "false regressions: $false_regressions of $tries; planted halvings missed: $planted_missed of $tries"
[ "$false_regressions" -eq 0 ] && [ "$planted_missed" -eq 0 ]
