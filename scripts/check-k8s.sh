#!/usr/bin/env bash
# Schema check of deploy/k8s/*.yaml without a cluster: kubernetes-validate (PyPI) carries the
# Kubernetes OpenAPI schemas; --strict rejects unknown fields. (`kubectl apply --dry-run=client`
# needs an API server for its schemas, which a CI box does not have.)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TMPDIR:-/tmp}/grab-bench-k8s-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'kubernetes-validate>=1.31'
fi
# 1.30: the oldest release with native sidecars (initContainers with restartPolicy: Always) on by default.
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 deploy/k8s/*.yaml
