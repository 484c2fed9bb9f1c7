#!/usr/bin/env bash
# The README's main command: install what is missing, build, run the default scenario end to end
# (scenarios/1m.toml: a million users, ten thousand tickets, four nodes behind Nginx).
# Arguments replace the default, e.g. `bash scripts/run.sh scenarios/smoke.toml --flaw off-by-one`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet --workspace
if [ $# -eq 0 ]; then set -- scenarios/1m.toml; fi
exec target/release/grab-bench run "$@"
