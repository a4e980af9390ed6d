#!/usr/bin/env bash
# Scales a Fjord release 3 -> 5 -> 3 pods on a real Kubernetes cluster (the current
# kubectl context) while a producer and a group consumer run, and reports whether any
# acknowledged record was lost.
#
#   k8s/live-test.sh --image REPOSITORY:TAG [options] [-- helm install flags...]
#
#   --namespace NS     where to install (default fjord-live); it must not hold a release
#   --release NAME     Helm release name (default fjord)
#   --rate N           records per second the producer sends (default 50; keep rate x run
#                      time under ~150,000 records: consumer pods' logs carry the records,
#                      and the kubelet rotates a container log at 10 MiB)
#   --hold SECONDS     time at each size before the next step (default 60)
#   --brokers-only     grow and shrink the brokers only; by default pods 3 and 4 are also
#                      promoted to voters (3 -> 5 voters) and demoted again, following the
#                      README's runbooks command for command
#   --keep             leave the release and namespace in place afterwards
#
# Steps: install the chart (3 pods, 3 voters) and create topic `live` (6 partitions, RF 3,
# min.insync.replicas 2); start a producer (acks=all, idempotent, each record's value its
# sequence number) and a consumer in group `live-test`, both in pods of the same image;
# k8s/scale.sh to 5 pods; [add-voter 3 --force, add-voter 4, voters=5]; hold; [remove-voter
# 4 --force, remove-voter 3, voters=3]; k8s/scale.sh to 3 pods; hold; stop the producer.
# Along the way: the chart refuses a plain `helm upgrade --set replicas=3` from 5 pods and
# a voter change the quorum has not made; growing restarts no running pod; every broker and
# quorum member advertises its pod DNS name as its rpc address. At the end the topic is
# read back from the beginning: every record the producer had acknowledged must be there.
# Logs, the records and summary.txt go to a directory the script names.
#
# Exit status: 0 all steps passed and nothing acknowledged was lost; 1 otherwise; 2 usage.
# Needs kubectl (1.24+), helm (3.14+ for --reset-then-reuse-values), python3, and a cluster
# that can pull the image and provide the volumes (e.g. -- --set
# persistence.storageClass=local-path). Not persistence.enabled=false: a pod replaced
# during the rolling restarts would come back empty.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
chart="$here/helm/fjord"
namespace=fjord-live release=fjord rate=50 hold=60 voters_too=1 keep=0 image=""
usage() {
    sed -n '2,34p' "$0" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --image) image="${2:?}"; shift 2 ;;
    --namespace) namespace="${2:?}"; shift 2 ;;
    --release) release="${2:?}"; shift 2 ;;
    --rate) rate="${2:?}"; shift 2 ;;
    --hold) hold="${2:?}"; shift 2 ;;
    --brokers-only) voters_too=0; shift ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    *) usage ;;
    esac
done
[ -n "$image" ] || usage
case "$rate$hold" in *[!0-9]*) usage ;; esac
[ "$rate" -ge 10 ] || usage
# REPOSITORY:TAG, where REPOSITORY may hold a registry port (host:5000/fjord:tag).
tag="${image##*:}" repository="${image%:*}"
case "$tag" in */*) usage ;; esac
[ "$repository" != "$image" ] || usage
helm_flags=("$@")

out="$(mktemp -d "${TMPDIR:-/tmp}/fjord-live-test.XXXXXX")"
summary="$out/summary.txt"
failed=0
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$summary"; }
fail() {
    log "FAIL: $*"
    failed=1
}
kube() { kubectl --namespace "$namespace" "$@"; }

reuse=--reuse-values
if helm upgrade --help 2>/dev/null | grep -- '--reset-then-reuse-values' >/dev/null; then
    reuse=--reset-then-reuse-values
fi
upgrade() { helm upgrade "$release" "$chart" --namespace "$namespace" "$reuse" "$@"; }

if helm status "$release" --namespace "$namespace" >/dev/null 2>&1; then
    echo "error: release $release already exists in namespace $namespace; pick another --namespace" >&2
    exit 2
fi
created_namespace=1
if kubectl get namespace "$namespace" >/dev/null 2>&1; then
    created_namespace=0
fi
log "context $(kubectl config current-context), namespace $namespace, image $image, output in $out"
# Client pods carry this label, so they can be found and removed.
client=(--labels app.kubernetes.io/part-of=fjord-live-test --image "$image" --restart=Never)

cleanup() {
    local rc=$?
    set +e
    [ -e "$out/stop" ] || touch "$out/stop"
    if kube get statefulset >/dev/null 2>&1; then
        for pod in $(kube get pods --selector "app.kubernetes.io/instance=$release" --output name 2>/dev/null); do
            kube logs "$pod" >"$out/${pod#pod/}.log" 2>&1
        done
    fi
    if [ "$keep" = 0 ]; then
        kube delete pods --selector app.kubernetes.io/part-of=fjord-live-test --wait=false >/dev/null 2>&1
        helm uninstall "$release" --namespace "$namespace" >/dev/null 2>&1
        # The chart keeps its volumes (persistence.retentionPolicy); this test's are not wanted.
        kube delete pvc --selector "app.kubernetes.io/instance=$release" --wait=false >/dev/null 2>&1
        if [ "$created_namespace" = 1 ]; then
            kubectl delete namespace "$namespace" --wait=false >/dev/null 2>&1
        fi
    fi
    # Background jobs (the generator and consumer loop) end with the stop file; kill what
    # is left of them by their own ids.
    for job in $(jobs -p); do
        kill "$job" 2>/dev/null
    done
    echo "logs and records: $out"
    exit "$rc"
}
trap cleanup EXIT

# --- install -----------------------------------------------------------------------
log "installing $release: 3 pods, 3 voters"
helm install "$release" "$chart" --namespace "$namespace" --create-namespace \
    --set image.repository="$repository" --set image.tag="$tag" \
    --set replicas=3 --set voters=3 ${helm_flags[@]+"${helm_flags[@]}"} --wait --timeout 15m ||
    { fail "helm install did not become ready"; exit 1; }
sts="$(kube get statefulset --selector "app.kubernetes.io/instance=$release,app.kubernetes.io/name=fjord" \
    --output jsonpath='{.items[0].metadata.name}')"
headless="$(kube get statefulset "$sts" --output jsonpath='{.spec.serviceName}')"
values="$(helm get values "$release" --namespace "$namespace" --all --output json)"
value() {
    python3 -c 'import functools, json, sys
print(functools.reduce(lambda v, k: v[k], sys.argv[2].split("."), json.loads(sys.argv[1])))' "$values" "$1"
}
kafka_port="$(value ports.kafka)" admin_port="$(value ports.admin)" rpc_port="$(value ports.rpc)"
domain="$(value clusterDomain)"
bootstrap="$sts:$kafka_port"
fjord() { kube exec "$sts-0" -- fjord "$@"; }
admin() { fjord "$@" --admin-server "127.0.0.1:$admin_port"; }

# Every broker 0..N-1 registered, unfenced, at its pod DNS name; the quorum has exactly
# the voters 0..V-1, every member at its pod DNS name. Tries for a minute.
check_cluster() {
    local pods="$1" voters="$2" status attempt
    for attempt in 1 2 3 4 5 6 7 8 9 10 11 12; do
        if status="$(admin cluster status --json 2>"$out/check.txt")" &&
            printf '%s\n' "$status" >"$out/status-$pods-pods-$voters-voters.json" &&
            python3 -c '
import json, sys
status = json.loads(sys.argv[1])
pods, voters, sts, headless, ns, domain, rpc = sys.argv[2:9]
pods, voters = int(pods), int(voters)
addr = lambda i: "%s-%d.%s.%s.svc.%s:%s" % (sts, i, headless, ns, domain, rpc)
problems = []
brokers = {b["id"]: b for b in status["brokers"]}
for i in range(pods):
    b = brokers.get(i)
    if b is None or b["fenced"]:
        problems.append("broker %d is %s" % (i, "fenced" if b else "not registered"))
    elif b["rpc_address"] != addr(i):
        problems.append("broker %d advertises rpc address %s, not %s" % (i, b["rpc_address"], addr(i)))
nodes = {n["node_id"]: n for n in status["quorum"].get("nodes", [])}
got = sorted(i for i, n in nodes.items() if n["voter"])
if got != list(range(voters)):
    problems.append("quorum voters are %s, not 0..%d" % (got, voters - 1))
for i in range(pods):
    n = nodes.get(i)
    if n is None:
        problems.append("node %d is not a member of the quorum" % i)
    elif n["rpc_address"] != addr(i):
        problems.append("the quorum knows node %d at %s, not %s" % (i, n["rpc_address"], addr(i)))
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
' "$status" "$pods" "$voters" "$sts" "$headless" "$namespace" "$domain" "$rpc_port" >"$out/check.txt" 2>&1; then
            log "cluster at $pods pods, $voters voters: every broker registered and every quorum member at its pod DNS name"
            return
        fi
        sleep 5
    done
    fail "cluster at $pods pods, $voters voters: $(tr '\n' ';' <"$out/check.txt")"
}

# An upgrade the chart must refuse (without changing anything).
expect_refused() {
    local what="$1"
    shift
    if upgrade "$@" >"$out/refused.txt" 2>&1; then
        fail "the chart accepted $what"
    elif grep -q 'Refusing' "$out/refused.txt"; then
        log "the chart refuses $what: $(grep -m1 'Refusing' "$out/refused.txt")"
    else
        fail "helm upgrade for $what failed, but not with the chart's refusal: $(tail -3 "$out/refused.txt")"
    fi
}

pod_uids() { kube get pods --selector "app.kubernetes.io/instance=$release" \
    --output jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid} {end}'; }

# Waits until pod NAME has finished; prints its phase.
wait_done() {
    local name="$1" phase="" deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        phase="$(kube get pod "$name" --output jsonpath='{.status.phase}' 2>/dev/null || true)"
        case "$phase" in Succeeded | Failed) break ;; esac
        sleep 3
    done
    echo "${phase:-Unknown}"
}

check_cluster 3 3
fjord topic create live --partitions 6 --replication-factor 3 --config min.insync.replicas=2 \
    --bootstrap-server "127.0.0.1:$kafka_port" || { fail "cannot create topic live"; exit 1; }

# --- clients -----------------------------------------------------------------------
# The producer reads one sequence number per line from this generator, through kubectl's
# attached stdin, until the stop file appears; its record N is line N.
generate() {
    local i=0 burst=$((rate / 10)) j
    while [ ! -e "$out/stop" ]; do
        for ((j = 0; j < burst; j++)); do
            i=$((i + 1))
            echo "$i"
        done
        sleep 0.1
    done
}
generate | kube run live-producer "${client[@]}" --stdin --pod-running-timeout=10m \
    -- produce --topic live --bootstrap-server "$bootstrap" --acks all \
    --property enable.idempotence=true --timeout-ms 300000 >"$out/producer.attach" 2>&1 &
producer_job=$!

# The group consumer runs again whenever it stops (a client error during a step ends
# it); it ends for good once it has been idle for 60 s after the producer finished.
consume_loop() {
    local n=0 name phase
    while true; do
        n=$((n + 1))
        name="live-consumer-$n"
        kube run "$name" "${client[@]}" \
            -- consume --topic live --group live-test --from-beginning \
            --bootstrap-server "$bootstrap" --idle-timeout-ms 60000 >/dev/null 2>&1 || true
        phase="$(wait_done "$name" 7200)"
        kube logs "$name" >"$out/consumer-$n.log" 2>&1 || true
        kube delete pod "$name" --wait=false >/dev/null 2>&1 || true
        if [ "$phase" = Succeeded ] && [ -e "$out/producer-done" ]; then
            return
        fi
        [ -e "$out/abort" ] && return
        echo "consumer run $n ended ($phase); starting another" >>"$out/consumer-runs.txt"
        sleep 2
    done
}
consume_loop &
consumer_job=$!

log "producer ($rate records/s, acks=all, idempotent) and group consumer started; warming up"
sleep "$hold"

# --- 3 -> 5 pods -------------------------------------------------------------------
before="$(pod_uids)"
start=$SECONDS
log "scaling to 5 pods: k8s/scale.sh $release $namespace 5"
if "$here/scale.sh" "$release" "$namespace" 5 >>"$out/scale-up.txt" 2>&1; then
    log "5 pods after $((SECONDS - start)) s"
else
    fail "k8s/scale.sh to 5 pods: $(tail -3 "$out/scale-up.txt")"
fi
after="$(pod_uids)"
for pod in $before; do
    case " $after " in *" $pod "*) ;; *) fail "growing restarted ${pod%%=*}" ;; esac
done
check_cluster 5 3
voters=3
if [ "$voters_too" = 1 ]; then
    expect_refused "voters=5 before the quorum changed" --set voters=5
    start=$SECONDS
    log "promoting pods 3 and 4 to voters"
    if admin cluster add-voter 3 --force && admin cluster add-voter 4; then
        generation="$(kube get statefulset "$sts" --output jsonpath='{.metadata.generation}')"
        if upgrade --set voters=5 --set confirm.voters="$generation" >>"$out/voters.txt" 2>&1 &&
            kube rollout status "statefulset/$sts" --timeout 30m >>"$out/voters.txt" 2>&1; then
            voters=5
            log "5 voters after $((SECONDS - start)) s (rolling restart included)"
        else
            fail "helm upgrade to voters=5: $(tail -3 "$out/voters.txt")"
        fi
    else
        fail "add-voter failed"
    fi
    check_cluster 5 5
fi
log "holding at 5 pods, $voters voters"
sleep "$hold"

# --- 5 -> 3 pods -------------------------------------------------------------------
if [ "$voters" = 5 ]; then
    start=$SECONDS
    log "demoting voters 4 and 3"
    if admin cluster remove-voter 4 --force && admin cluster remove-voter 3; then
        generation="$(kube get statefulset "$sts" --output jsonpath='{.metadata.generation}')"
        if upgrade --set voters=3 --set confirm.voters="$generation" >>"$out/voters.txt" 2>&1 &&
            kube rollout status "statefulset/$sts" --timeout 30m >>"$out/voters.txt" 2>&1; then
            voters=3
            log "3 voters after $((SECONDS - start)) s (rolling restart included)"
        else
            fail "helm upgrade to voters=3: $(tail -3 "$out/voters.txt")"
        fi
    else
        fail "remove-voter failed"
    fi
    check_cluster 5 3
fi
expect_refused "replicas=3 without draining" --set replicas=3
start=$SECONDS
log "scaling to 3 pods: k8s/scale.sh $release $namespace 3"
if "$here/scale.sh" "$release" "$namespace" 3 >>"$out/scale-down.txt" 2>&1; then
    log "3 pods after $((SECONDS - start)) s"
    check_cluster 3 3
else
    fail "k8s/scale.sh to 3 pods: $(tail -3 "$out/scale-down.txt")"
fi
log "holding at 3 pods"
sleep "$hold"

# --- stop the clients and read everything back ---------------------------------------
log "stopping the producer"
touch "$out/stop"
# The generator ends, kubectl closes the pod's stdin, and the producer flushes and exits.
for _ in $(seq 600); do
    kill -0 "$producer_job" 2>/dev/null || break
    sleep 1
done
kill "$producer_job" 2>/dev/null || true
wait "$producer_job" 2>/dev/null || true
phase="$(wait_done live-producer 600)"
kube logs live-producer >"$out/producer.log" 2>&1 || cp "$out/producer.attach" "$out/producer.log"
kube delete pod live-producer --wait=false >/dev/null 2>&1 || true
touch "$out/producer-done"
log "producer finished ($phase); waiting for the group consumer to go idle"
wait "$consumer_job" || true

# One reader per partition keeps each pod's log small (the kubelet rotates container logs
# at 10 MiB by default, and kubectl logs shows the newest file only).
for partition in 0 1 2 3 4 5; do
    read_ok=0
    for attempt in 1 2 3; do
        name="live-reader-$partition-$attempt"
        kube run "$name" "${client[@]}" \
            -- consume --topic live --partition "$partition" --from-beginning \
            --bootstrap-server "$bootstrap" --idle-timeout-ms 20000 >/dev/null 2>&1 || true
        reader_phase="$(wait_done "$name" 1800)"
        kube logs "$name" >"$out/reader-$partition.log" 2>&1 || true
        kube delete pod "$name" --wait=false >/dev/null 2>&1 || true
        if [ "$reader_phase" = Succeeded ]; then
            read_ok=1
            break
        fi
    done
    [ "$read_ok" = 1 ] || fail "could not read partition $partition back"
done

# --- verdict -------------------------------------------------------------------------
if ! python3 - "$out" <<'PY' | tee -a "$summary"; then
import glob, os, re, sys
out = sys.argv[1]

def numbers(path):
    with open(path, errors="replace") as f:
        return [int(l) for l in (line.strip() for line in f) if l.isdigit()]

log = open(os.path.join(out, "producer.log"), errors="replace").read()
failed = {int(n) for n in re.findall(r"record (\d+)\b", log)}
done = re.search(r"Produced (\d+) records", log)
partial = re.search(r"(\d+) of (\d+) records were not written", log)
unanswered = re.search(r"\((\d+) not acknowledged in time\)", log)
if done:
    sent, unknown = int(done.group(1)), 0
elif partial:
    sent, unknown = int(partial.group(2)), int(unanswered.group(1)) if unanswered else 0
else:
    print("FAIL: the producer did not finish with its report; cannot tell what was acknowledged")
    sys.exit(1)
read = [n for path in sorted(glob.glob(os.path.join(out, "reader-*.log"))) for n in numbers(path)]
seen = set(read)
grouped = set()
for path in glob.glob(os.path.join(out, "consumer-*.log")):
    grouped.update(numbers(path))
acked = [n for n in range(1, sent + 1) if n not in failed]
missing = [n for n in acked if n not in seen]
group_missing = [n for n in acked if n not in grouped]
duplicates = len(read) - len(seen)
print(f"producer: {sent} records sent, {len(failed)} refused with an error, {unknown} unanswered at the end")
print(f"read back: {len(read)} records, {len(seen)} distinct, {duplicates} duplicates")
print(f"group consumer: {len(grouped)} distinct records over "
      f"{len(glob.glob(os.path.join(out, 'consumer-*.log')))} run(s), "
      f"{len(group_missing)} acknowledged records never delivered")
ok = True
if missing and len(missing) > unknown:
    print(f"FAIL: {len(missing) - unknown} or more acknowledged records lost, e.g. {missing[:10]}")
    ok = False
elif missing:
    print(f"INCONCLUSIVE: {len(missing)} records missing, all could be the {unknown} unanswered ones")
    ok = False
else:
    print("no acknowledged record lost")
if duplicates:
    print(f"FAIL: {duplicates} duplicates despite idempotence")
    ok = False
if len(group_missing) > unknown:
    print(f"FAIL: the group consumer never got {len(group_missing)} acknowledged records, e.g. {group_missing[:10]}")
    ok = False
sys.exit(0 if ok else 1)
PY
    failed=1
fi

if [ "$failed" = 0 ]; then
    log "PASS"
else
    log "FAILED (see above and $out)"
    touch "$out/abort"
    exit 1
fi
