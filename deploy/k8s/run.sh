#!/usr/bin/env bash
# Runs the segmented sale in the current kubectl context: scenario, agents (an Indexed Job whose
# completion index is the segment), then the merge step; prints the merged verdict.
# Usage: bash deploy/k8s/run.sh [START_DELAY_SECONDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
delay="${1:-30}"
run_id="run-$(date +%s)"
start_at=$(( $(date +%s) + delay ))
kubectl apply -f "$here/scenario.yaml"
sed -e "s/value: \"0\"/value: \"$start_at\"/" -e "s/value: \"run\"/value: \"$run_id\"/" \
    "$here/agents.yaml" | kubectl apply -f -
# Until the agents' Job is Complete or Failed (a failed segment fails it at once:
# maxFailedIndexes 0), at most 15 minutes; the merge runs either way and names what is missing.
for _ in $(seq 900); do
    state="$(kubectl get job/grab-bench-agents -o jsonpath='{.status.conditions[?(@.status=="True")].type}')"
    case " $state " in *" Complete "* | *" Failed "*) break ;; esac
    sleep 1
done
echo "agents: ${state:-still running after 15 minutes}"
sed -e "s/value: \"run\"/value: \"$run_id\"/" "$here/merge.yaml" | kubectl apply -f -
kubectl wait --for=condition=complete --timeout=10m job/grab-bench-merge || true
kubectl logs job/grab-bench-merge
