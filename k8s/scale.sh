#!/usr/bin/env bash
# Changes the number of broker pods of a Fjord Helm release without losing data.
#
#   k8s/scale.sh RELEASE NAMESPACE REPLICAS [helm upgrade flags...]
#
# REPLICAS is the new number of pods (the chart's `replicas`). The first `voters` pods are
# the Raft quorum and are never removed here: demote them first (README, Kubernetes
# runbooks, "Shrink the quorum").
# Growing: `helm upgrade --set replicas=REPLICAS`; the new pods join as learner brokers.
# Waits until each is ready and registered, unfenced, at its pod DNS name, then runs
# `fjord cluster balance --execute --wait` so they take their share of the replicas
# (after `fjord cluster undrain`, where the binary has it: an id drained before an
# earlier scale-down stays drained).
# Shrinking: each departing broker (the highest ordinals) is drained with `fjord cluster
# drain ID --wait`. Then no partition may list a departing broker among its replicas (one
# that came back, e.g. moved there by auto-balance, is drained again), and only then does
# `helm upgrade` remove the pods, with the confirmation the chart asks for. Afterwards no
# partition may name a removed broker and none may stay under-replicated. Any failure
# exits non-zero and says why.
#
# Environment: FJORD_CLIENT_PROPERTIES="KEY=VALUE ..." adds --property flags to the Kafka
# commands run in the pod (e.g. security.protocol=SASL_SSL sasl.mechanism=SCRAM-SHA-512
# sasl.username=admin sasl.password=... ssl.ca.location=/etc/fjord-tls/ca.pem);
# SCALE_TIMEOUT bounds each wait in seconds (default 1800).
set -euo pipefail

usage() {
    sed -n '2,24p' "$0" >&2
    exit 2
}
[ $# -ge 3 ] || usage
release="$1" namespace="$2" wanted="$3"
shift 3
case "$wanted" in
'' | *[!0-9]*) usage ;;
esac
chart="$(cd "$(dirname "$0")" && pwd)/helm/fjord"
timeout="${SCALE_TIMEOUT:-1800}"

die() {
    echo "error: $*" >&2
    exit 1
}
kube() { kubectl --namespace "$namespace" "$@"; }

# --reuse-values would also reuse the chart defaults of the release's chart version;
# --reset-then-reuse-values (helm 3.14+) takes this chart's defaults and the release's own
# settings.
reuse=--reuse-values
if helm upgrade --help 2>/dev/null | grep -- '--reset-then-reuse-values' >/dev/null; then
    reuse=--reset-then-reuse-values
fi

values="$(helm get values "$release" --namespace "$namespace" --all --output json)"
value() {
    python3 -c 'import functools, json, sys
print(functools.reduce(lambda v, k: v[k], sys.argv[2].split("."), json.loads(sys.argv[1])))' "$values" "$1"
}
voters="$(value voters 2>/dev/null)" ||
    die "release $release has no \`voters\` value: it was made by an older chart; upgrade it first with --reset-then-reuse-values (or --set voters=N, its current voter count)"
kafka_port="$(value ports.kafka)"
admin_port="$(value ports.admin)"

sts="$(kube get statefulset --selector "app.kubernetes.io/instance=$release,app.kubernetes.io/name=fjord" \
    --output jsonpath='{.items[0].metadata.name}')"
[ -n "$sts" ] || die "no Fjord StatefulSet of release $release in namespace $namespace"
current="$(kube get statefulset "$sts" --output jsonpath='{.spec.replicas}')"
headless="$(kube get statefulset "$sts" --output jsonpath='{.spec.serviceName}')"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

client_props=()
for p in ${FJORD_CLIENT_PROPERTIES:-}; do
    client_props+=(--property "$p")
done
fjord() { kube exec "$sts-0" -- fjord "$@"; }
kafka() { fjord "$@" --bootstrap-server "127.0.0.1:$kafka_port" ${client_props[@]+"${client_props[@]}"}; }
# Newer fjord binaries record a drain in the metadata (the broker then gets no new
# replicas until `fjord cluster undrain`); drain and balance then also read the admin port.
admin_flag=()
if fjord cluster drain --help 2>/dev/null | grep -- '--admin-server' >/dev/null; then
    admin_flag=(--admin-server "127.0.0.1:$admin_port")
fi
has_undrain=0
if fjord cluster --help 2>/dev/null | grep -w undrain >/dev/null; then
    has_undrain=1
fi

# Reads `fjord cluster status --json` on stdin. Prints one line per problem and exits 1
# if there is any:
#   replicas IDS      partitions that list any of the brokers IDS (comma-separated)
#   underreplicated   partitions whose ISR is shorter than their replicas
#   registered IDS    brokers IDS not registered, fenced, or not at their pod DNS name
check() {
    python3 -c '
import json, sys
what, arg, sts, headless = sys.argv[1:5]
status = json.load(sys.stdin)
ids = {int(i) for i in arg.split(",") if i}
problems = []
if what == "replicas":
    for t in status["topics"]:
        for p in t["partitions"]:
            on = sorted(ids & set(p["replicas"]))
            if on:
                problems.append("%s-%d: replicas %s include %s" % (t["name"], p["partition"], p["replicas"], on))
elif what == "underreplicated":
    for p in status["under_replicated_partitions"]:
        problems.append("%s-%d: replicas %s, in sync %s" % (p["topic"], p["partition"], p["replicas"], p["isr"]))
elif what == "registered":
    brokers = {b["id"]: b for b in status["brokers"]}
    for i in sorted(ids):
        b = brokers.get(i)
        want = "%s-%d.%s." % (sts, i, headless)
        if b is None:
            problems.append("broker %d is not registered" % i)
        elif b["fenced"]:
            problems.append("broker %d is fenced" % i)
        elif not b["rpc_address"].startswith(want):
            problems.append("broker %d advertises rpc address %s, not its pod DNS name %s..." % (i, b["rpc_address"], want))
for line in problems:
    print(line)
sys.exit(1 if problems else 0)
' "$1" "$2" "$sts" "$headless"
}

# `check WHAT IDS` on the cluster's status now: returns 1 if there are problems, with
# them in $found. Exits the script if the status cannot be read (never a silent pass).
problems() {
    local attempt
    for attempt in 1 2 3 4 5 6; do
        if fjord cluster status --json --admin-server "127.0.0.1:$admin_port" \
            >"$tmp/status.json" 2>"$tmp/status.err" && [ -s "$tmp/status.json" ]; then
            if found="$(check "$1" "$2" <"$tmp/status.json")"; then
                return 0
            fi
            [ -n "$found" ] || die "cannot parse the cluster status of $sts-0"
            return 1
        fi
        echo "reading the cluster status failed (attempt $attempt): $(cat "$tmp/status.err")" >&2
        sleep 5
    done
    die "cannot read the cluster status from $sts-0"
}

# Polls `problems WHAT IDS` until there are none (returns 0) or SECONDS pass (returns 1,
# the last problems in $found).
wait_clean() {
    local deadline=$((SECONDS + $3))
    until problems "$1" "$2"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 5
    done
}

upgrade() {
    helm upgrade "$release" "$chart" --namespace "$namespace" "$reuse" "$@"
}

echo "release $release: $current pods ($voters voters), $wanted wanted"
if [ "$wanted" -lt "$voters" ]; then
    die "$wanted pods would remove voters: the first $voters pods are the Raft quorum. Demote voters first (fjord cluster remove-voter, then helm upgrade --set voters=N; README, Kubernetes runbooks)"
fi
if [ "$wanted" -eq "$current" ]; then
    echo "nothing to do: $current pods"
    exit 0
fi

if [ "$wanted" -gt "$current" ]; then
    upgrade --set "replicas=$wanted" "$@"
    new="$(seq -s, "$current" $((wanted - 1)))"
    for ((id = current; id < wanted; id++)); do
        echo "== waiting for pod $sts-$id to be ready"
        deadline=$((SECONDS + timeout))
        until kube get pod "$sts-$id" >/dev/null 2>&1; do
            [ "$SECONDS" -lt "$deadline" ] || die "pod $sts-$id was not created"
            sleep 2
        done
        kube wait --for=condition=Ready "pod/$sts-$id" --timeout "$((deadline - SECONDS + 1))s" ||
            die "pod $sts-$id did not become ready; see kubectl -n $namespace logs $sts-$id"
    done
    wait_clean registered "$new" 120 ||
        die "the new brokers are not all registered and reachable:"$'\n'"$found"
    if [ "$has_undrain" = 1 ]; then
        # Brokers with these ids may have been drained before an earlier scale-down.
        for ((id = current; id < wanted; id++)); do
            fjord cluster undrain "$id" --admin-server "127.0.0.1:$admin_port" ||
                die "cannot undrain broker $id"
        done
    fi
    echo "== balancing replicas onto brokers $new"
    kafka cluster balance --execute --wait --wait-timeout "$timeout" ${admin_flag[@]+"${admin_flag[@]}"} ||
        die "balancing did not finish; the moves carry on in the cluster (fjord cluster reassign --verify)"
    echo "done: $wanted pods ($voters voters)"
    exit 0
fi

departing="$(seq -s, "$wanted" $((current - 1)))"
for ((round = 1; ; round++)); do
    for ((id = current - 1; id >= wanted; id--)); do
        echo "== draining broker $id"
        # With --wait, drain fails unless the broker ends up holding no replica at all.
        kafka cluster drain "$id" --wait --wait-timeout "$timeout" ${admin_flag[@]+"${admin_flag[@]}"} ||
            die "broker $id could not be emptied (can the other brokers hold every replication factor?); no pod was removed"
    done
    # A replica can come back after its drain (auto-balance filling what looks like an
    # empty broker, a new topic placed there): check all of them together, twice, a
    # little apart.
    sleep 5
    if problems replicas "$departing"; then
        sleep 10
        if problems replicas "$departing"; then
            break
        fi
    fi
    if [ "$round" -ge 3 ]; then
        die "replicas keep coming back onto brokers $departing (is auto.balance.enable on?); no pod was removed:"$'\n'"$found"
    fi
    echo "replicas came back onto brokers $departing; draining again:"
    printf '%s\n' "$found"
done

generation="$(kube get statefulset "$sts" --output jsonpath='{.metadata.generation}')"
upgrade --set "replicas=$wanted" --set "confirm.drained=$generation" "$@"
for ((id = current - 1; id >= wanted; id--)); do
    echo "== waiting for pod $sts-$id to go"
    deadline=$((SECONDS + timeout))
    while kube get pod "$sts-$id" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "pod $sts-$id was not removed"
        sleep 2
    done
done
wait_clean replicas "$departing" 30 ||
    die "partitions have replicas on the removed brokers $departing (placed there after the drain). Scale back with k8s/scale.sh $release $namespace $current, or move them with fjord cluster reassign:"$'\n'"$found"
wait_clean underreplicated "" 300 ||
    die "partitions are still under-replicated 5 minutes after the scale-down:"$'\n'"$found"
echo "done: $wanted pods ($voters voters); brokers $departing removed, no replica left on them."
echo "(They stay listed as fenced brokers and quorum learners: Fjord has no command to forget a broker yet.)"
