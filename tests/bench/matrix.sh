#!/usr/bin/env bash
# The benchmark matrix: 100 B and 1 KiB records, acks 1 and all, one node and three nodes
# with RF 3, compression off and lz4, each produced for a fixed time and then consumed,
# plus the three-node acks=all 1 KiB case again at half its peak rate for latency. The
# machine's own limits (loopback TCP, sequential writes to the data directory) are
# measured in the same run, and docs/benchmarks.md shows every figure as a ratio of them.
#   tests/bench/matrix.sh [SECONDS_PER_SCENARIO]     (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
out=tests/bench/out/matrix
rm -rf "$out" && mkdir -p "$out"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check matplotlib
cargo build --release --bin fjord
bin="$PWD/target/release/fjord"
work="$(mktemp -d)"
port_base=19000
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
trap 'stop_nodes; rm -rf "$work"' EXIT

# cluster N [NAME]: N fresh nodes on loopback, all voters, data under NAME (default nN).
cluster() {
    start_nodes "$bin" "$1" "$work/${2:-n$1}" "$out/${2:-n$1}"
}

# record_memory RUN NODES: each node's peak resident memory so far (page cache excluded).
record_memory() {
    local run="$1" nodes="$2" i pid kb
    for i in $(seq 1 "$nodes"); do
        pid="${pids[$((i - 1))]}"
        kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        echo "{\"run\": \"$run\", \"nodes\": $nodes, \"node\": $i, \"peak_rss_kib\": ${kb:-0}}" \
            >>"$out/memory.jsonl"
    done
}

mkdir -p "$work/baseline"
sync # the build's dirty pages must not slow the disk measurement
"$bin" bench baseline --dir "$work/baseline" --json | tail -1 >"$out/baseline.json"
cat "$out/baseline.json"

# scenario NAME NODES -- BENCH FLAGS...: produce for the run's duration, then consume it.
# Where the produce phase's CPU went (all brokers, the bench client) is recorded too: on
# two shared cores it tells which side a figure is bound by.
scenario() {
    local name="$1" nodes="$2"
    shift 3
    local bootstrap="127.0.0.1:$(kafka_port 1)"
    echo "== $name"
    # Start on a quiet disk: the previous scenario's dirty pages are written back first,
    # so their writeback does not land in this scenario's latencies.
    sync
    local before client
    before=$(cpu_ticks)
    client=$( {
        TIMEFORMAT='%U %S'
        time "$bin" bench produce --bootstrap-server "$bootstrap" --topic "$name" \
            --partitions "${PARTITIONS:-6}" \
            --replication-factor "$nodes" --duration "$seconds" --json "$@" \
            >"$out/$name.produce.json" 2>"$out/$name.produce.progress"
    } 2>&1)
    echo "{\"brokers_cpu_seconds\": $(echo "$(cpu_ticks) $before $(getconf CLK_TCK)" |
        awk '{print ($1 - $2) / $3}'), \"client_cpu_seconds\": $(echo "$client" |
        awk '{print $1 + $2}')}" >"$out/$name.cpu.json"
    tail -1 "$out/$name.produce.json"
    "$bin" bench consume --bootstrap-server "$bootstrap" --topic "$name" --consumers 2 --json \
        >"$out/$name.consume.json" 2>"$out/$name.consume.progress"
    tail -1 "$out/$name.consume.json"
    # Free the disk for the next scenario, and wait until every node has removed the
    # files: unlinking tens of GB keeps the filesystem journal busy, which must not land
    # in the next scenario's latencies either.
    "$bin" topic delete --bootstrap-server "$bootstrap" "$name" >/dev/null
    local deadline=$((SECONDS + 120))
    while compgen -G "$work/*/*/logs/$name-[0-9]*" >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then echo "topic $name not deleted" >&2; exit 1; fi
        sleep 0.2 # polling for the deletion with a deadline
    done
    settle_memory
}

for nodes in 1 3; do
    cluster "$nodes"
    for size in 100 1024; do
        for acks in 1 all; do
            for compression in none lz4; do
                scenario "n$nodes-${size}b-acks$acks-$compression" "$nodes" -- \
                    --record-size "$size" --acks "$acks" --compression "$compression" \
                    --producers 2
            done
        done
    done
    if [ "$nodes" = 3 ]; then
        peak=$(.venv/bin/python -c 'import json,sys; print(int(json.loads(open(sys.argv[1]).read().splitlines()[-1])["records_per_sec"]))' \
            "$out/n3-1024b-acksall-none.produce.json")
        scenario "n3-1024b-acksall-none-half-rate" 3 -- --record-size 1024 --acks all \
            --producers 2 --throughput $((peak / 2))
    fi
    record_memory "matrix" "$nodes"
    stop_nodes
done

# Memory with many partitions: fresh nodes (so the peak covers only this run), every node
# a replica of all 100 partitions, under produce and then consume load.
cluster 3 many
PARTITIONS=100 scenario "n3-100p-1024b-acks1-none" 3 -- --record-size 1024 --acks 1 \
    --producers 2
record_memory "100-partitions" 3
stop_nodes

.venv/bin/python tests/bench/matrix_report.py "$out" "$seconds" docs/benchmarks.md docs/bench
echo "wrote docs/benchmarks.md and docs/bench/*.png"
