#!/usr/bin/env bash
# Schema check of deploy/k8s/*.yaml without a cluster: kubernetes-validate (PyPI) carries the
# Kubernetes OpenAPI schemas; --strict rejects unknown fields. (`kubectl apply --dry-run=client`
# needs an API server for its schemas, which a CI box does not have.)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TMPDIR:-/tmp}/grab-bench-k8s-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    rm -rf "$venv"
    # A fresh Debian has python3 but not always its venv module (package python3-venv).
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        echo "check-k8s: installing python3-venv" >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3 python3-venv >/dev/null
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet 'kubernetes-validate>=1.31'
fi
# 1.30: the oldest release with native sidecars (initContainers with restartPolicy: Always) on by default.
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 deploy/k8s/*.yaml
