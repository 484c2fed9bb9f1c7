#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The example shops are programs the tests start; an example without tests of its own is not
# built by `cargo test`, so every binary of the workspace is built first.
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"
