#!/usr/bin/env bash
# What a broker spends to serve reads, from 1 partition against 6 (issue 34, item 2): its
# CPU time and minor page faults per MB read, for two builds alternated in one run, both
# driven by the same client (HEAD_BIN's `fjord bench`). Figures are the broker's own
# (perf stat's task-clock and context switches where perf is installed, /proc's CPU ticks
# otherwise; page faults from /proc), not the client's. BASE_BIN and HEAD_BIN may be the
# same binary, to compare 1 partition with 6 for one build.
#   tests/bench/fetch_cost.sh BASE_BIN HEAD_BIN [ROUNDS] [RECORDS]
# e.g. cargo build --release --bin fjord && cp target/release/fjord /tmp/fjord-base, change,
# rebuild, then tests/bench/fetch_cost.sh /tmp/fjord-base target/release/fjord
set -euo pipefail
base="$1" head="$2" rounds="${3:-3}" records="${4:-400000}"
work="$(mktemp -d)"
pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; pid=""; }
trap 'stop; rm -rf "$work"' EXIT
boot=127.0.0.1:19592

# proc_fields PID: "cpu_ticks minor_faults" of the process so far.
proc_fields() {
    # Fields after the command name: state is field 3; minflt 10, utime 14, stime 15.
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13, $8}'
}

# run BIN PARTITIONS: one broker, RECORDS records of 1 KiB produced, then read by one
# consumer; prints "cpu_ms_per_mb faults_per_mb records_per_sec".
run() {
    local bin="$1" partitions="$2" data="$work/d-$RANDOM"
    "$bin" serve --data-dir "$data" --listeners "PLAINTEXT://$boot" \
        --rpc-listener 127.0.0.1:19593 --admin-listener 127.0.0.1:19594 >"$work/node.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        "$head" topic list --bootstrap-server "$boot" --timeout-ms 2000 >/dev/null 2>&1 && break
        sleep 0.1 # readiness poll
    done
    "$head" bench produce --bootstrap-server "$boot" --topic t --partitions "$partitions" \
        --record-size 1024 --num-records "$records" --acks 1 >/dev/null 2>&1
    local before after perf_pid=""
    before="$(proc_fields "$pid")"
    # perf's task-clock counts the broker's CPU in nanoseconds, where /proc's ticks are
    # 10 ms; it is used where perf is installed.
    if command -v perf >/dev/null 2>&1; then
        perf stat -x, -e task-clock,context-switches -p "$pid" -o "$work/perf.csv" &
        perf_pid=$!
    fi
    "$head" bench consume --bootstrap-server "$boot" --topic t --partitions "$partitions" \
        --record-size 1024 --json 2>/dev/null | tail -1 >"$work/consume.json"
    after="$(proc_fields "$pid")"
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" && wait "$perf_pid" || true
    else
        : >"$work/perf.csv"
    fi
    stop
    rm -rf "$data"
    local ticks_hz
    ticks_hz="$(getconf CLK_TCK)"
    python3 - "$before" "$after" "$ticks_hz" "$work/consume.json" "$work/perf.csv" <<'PY'
import json, sys
b, a, hz, path = sys.argv[1].split(), sys.argv[2].split(), int(sys.argv[3]), sys.argv[4]
summary = json.load(open(path))
mb = summary["bytes"] / 1e6
cpu_ms = (float(a[0]) - float(b[0])) * 1000 / hz
faults = float(a[1]) - float(b[1])
switches = float("nan")
for line in open(sys.argv[5]):
    f = line.strip().split(",")
    if len(f) > 2 and f[2] == "task-clock" and f[0] not in ("", "<not counted>"):
        cpu_ms = float(f[0])
    if len(f) > 2 and f[2] == "context-switches" and f[0] not in ("", "<not counted>"):
        switches = float(f[0])
print(f"{cpu_ms / mb:.3f} {faults / mb:.1f} {switches / mb:.2f} {summary['records_per_sec']:.0f}")
PY
}

echo "build partitions cpu_ms_per_MB minor_faults_per_MB context_switches_per_MB records_per_s"
for round in $(seq 1 "$rounds"); do
    for partitions in 1 6; do
        for side in base head; do
            bin="$base"
            [ "$side" = head ] && bin="$head"
            echo "$side $partitions $(run "$bin" "$partitions")"
        done
    done
done
