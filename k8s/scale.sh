#!/usr/bin/env bash
# Changes the number of learner brokers of a Fjord Helm release without losing data.
#
#   k8s/scale.sh RELEASE NAMESPACE LEARNERS [helm upgrade flags...]
#
# Growing: `helm upgrade --set learners=LEARNERS`, wait for the new pods to be ready, then
# `fjord cluster balance --execute --wait`, so the new brokers take their share of
# replicas (without it they only get new partitions).
# Shrinking: every departing pod (the highest ordinals) is drained first with
# `fjord cluster drain ID --wait`; the script stops if a drain fails (the remaining brokers
# cannot hold every replica) or if any replica is still on a departing broker, and only
# then runs `helm upgrade`. Voters are never removed here: demote them first with
# `fjord cluster remove-voter` (see the README runbook).
set -euo pipefail

if [ $# -lt 3 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
release="$1" namespace="$2" learners="$3"
shift 3
chart="$(cd "$(dirname "$0")" && pwd)/helm/fjord"

kube() { kubectl --namespace "$namespace" "$@"; }
fjord() { kube exec "$release-0" -- fjord "$@"; }

voters="$(helm get values "$release" --namespace "$namespace" --all --output json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["replicas"])')"
current="$(kube get statefulset "$release" -o jsonpath='{.spec.replicas}')"
wanted=$((voters + learners))
echo "release $release: $voters voters, $((current - voters)) learners now, $learners wanted"

if [ "$wanted" -lt "$current" ]; then
    for ((id = current - 1; id >= wanted; id--)); do
        echo "== draining broker $id"
        # With --wait, drain fails unless the broker ends up holding no replica at all.
        if ! fjord cluster drain "$id" --wait --bootstrap-server 127.0.0.1:9092; then
            echo "error: broker $id could not be emptied; not removing it" >&2
            exit 1
        fi
    done
fi

helm upgrade "$release" "$chart" --namespace "$namespace" --reuse-values \
    --set "learners=$learners" "$@"
kube rollout status "statefulset/$release" --timeout 30m

if [ "$wanted" -gt "$current" ]; then
    echo "== balancing replicas onto the new brokers"
    fjord cluster balance --execute --wait --bootstrap-server 127.0.0.1:9092
fi
echo "done: $voters voters, $learners learners"
