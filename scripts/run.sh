#!/usr/bin/env bash
# The README's main command: install what is missing, build, run the default job end to end.
# For now that is `grab-bench demo` (Redis + 4 weighted nodes behind Nginx + 5,000 distinct
# buyers for 1,000 tickets); extra arguments are passed on, e.g. `--buyers 20000 --flaw off-by-one`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet
exec target/release/grab-bench demo "$@"
