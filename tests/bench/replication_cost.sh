#!/usr/bin/env bash
# What replication costs (issue 34, item 1): for two builds alternated in one run, the
# records/s and the brokers' CPU per record of (a) one node at acks=1 and (b) three nodes,
# RF 3, min.insync.replicas 2, acks=all; 1 KiB records, 6 partitions, both driven by the
# same client (HEAD_BIN's `fjord bench produce`, 2 producers). CPU comes from each
# broker's /proc/PID/stat, so the client's own work is not counted.
#   tests/bench/replication_cost.sh BASE_BIN HEAD_BIN [ROUNDS] [SECONDS]
# With PERF=1 each three-node HEAD run is also recorded with `perf record -g` into
# $OUT/perf-ROUND.data (OUT defaults to tests/bench/out/replication_cost).
set -euo pipefail
base="$1" head="$2" rounds="${3:-3}" seconds="${4:-15}"
out="${OUT:-tests/bench/out/replication_cost}"
mkdir -p "$out"
work="$(mktemp -d)"
port_base=19600
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
trap 'stop_nodes; rm -rf "$work"' EXIT

# run BIN NODES ACKS [perf file]: prints "records_per_s broker_cpu_us_per_record".
run() {
    local bin="$1" nodes="$2" acks="$3" perf_file="${4:-}" boot="127.0.0.1:$(kafka_port 1)"
    start_nodes "$bin" "$nodes" "$work/data" "$work"
    "$head" topic create --bootstrap-server "$boot" --partitions 6 \
        --replication-factor "$nodes" --config "min.insync.replicas=$(((nodes + 1) / 2))" \
        t >/dev/null
    sync # the previous run's dirty pages must not land in this one
    settle_memory
    local before perf_pid=""
    before=$(cpu_ticks)
    if [ -n "$perf_file" ]; then
        perf record -q -g -o "$perf_file" -p "$(
            IFS=,
            echo "${pids[*]}"
        )" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    "$head" bench produce --bootstrap-server "$boot" --topic t --record-size 1024 \
        --acks "$acks" --producers 2 --duration "$seconds" --json 2>/dev/null |
        tail -1 >"$work/produce.json"
    local after
    after=$(cpu_ticks)
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" && wait "$perf_pid" || true
    fi
    stop_nodes
    python3 - "$before" "$after" "$(getconf CLK_TCK)" "$work/produce.json" <<'PY'
import json, sys
before, after, hz, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
summary = json.load(open(path))
records = summary["records"]
print(f"{summary['records_per_sec']:.0f} {(after - before) / hz * 1e6 / records:.2f}")
PY
}

echo "round build one_node_rec_s one_node_cpu_us three_node_rec_s three_node_cpu_us ratio" |
    tee "$out/table.txt"
for round in $(seq 1 "$rounds"); do
    for side in base head; do
        bin="$base"
        [ "$side" = head ] && bin="$head"
        read -r one_rate one_cpu < <(run "$bin" 1 1)
        perf_file=""
        [ "${PERF:-0}" = 1 ] && [ "$side" = head ] && perf_file="$out/perf-$round.data"
        read -r three_rate three_cpu < <(run "$bin" 3 all "$perf_file")
        echo "$round $side $one_rate $one_cpu $three_rate $three_cpu $(
            awk -v a="$one_rate" -v b="$three_rate" 'BEGIN {printf "%.3f", b / a}'
        )" | tee -a "$out/table.txt"
    done
done
python3 - "$out/table.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
print("median: build one_node_rec_s one_node_cpu_us three_node_rec_s three_node_cpu_us ratio")
for side in ("base", "head"):
    cols = list(zip(*[r[2:] for r in rows if r[1] == side]))
    if cols:
        print(side, " ".join(f"{statistics.median(map(float, c)):g}" for c in cols))
PY
