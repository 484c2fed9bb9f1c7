#!/usr/bin/env bash
# The README's main command: build, install what the scenario starts and the machine lacks (for
# the default, redis-server and nginx: `grab-bench validate --needs` says), run it end to end
# (scenarios/1m.toml: a million users, ten thousand tickets, four nodes behind Nginx).
# Arguments replace the default, e.g. `bash scripts/run.sh scenarios/smoke.toml --flaw off-by-one`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then set -- scenarios/1m.toml; fi
cargo build --release --quiet --workspace
# A scenario that does not validate installs nothing; `run` below says what is wrong with it.
if needs=$(target/release/grab-bench validate --needs "$1" 2>/dev/null); then
  # shellcheck disable=SC2086 # one program per line
  [ -z "$needs" ] || bash scripts/install-deps.sh $needs
fi
exec target/release/grab-bench run "$@"
