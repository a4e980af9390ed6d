#!/usr/bin/env bash
# Acknowledgement latency at half the three-node peak (issue 34, item 3): three release
# nodes on loopback, a 6-partition topic with RF 3 and min.insync.replicas=2, 1 KiB
# records, acks=all, two producer threads. Each round measures the cluster's peak for
# SECONDS, then produces at half that rate for SECONDS (`fjord bench produce
# --throughput`, which paces each thread with sleeps) and reports p50/p99/p99.9 of the
# acknowledgement latency, with the CPU the three brokers and the client used meanwhile
# (from /proc and the shell's `time`), so a spinning client would show.
#   tests/bench/latency.sh [SECONDS] [ROUNDS] [BASE]          (default 15 s, 3 rounds)
# BASE (or the variable BASE_BIN) is a fjord binary, or a git revision to build in a
# worktree with its own target directory; its brokers then alternate with HEAD's, round
# by round, both driven by HEAD's client. With BASE, the table is also written into
# docs/benchmarks.md between the latency markers (WRITE_DOC=0 to skip). HEAD_BIN=path
# takes that binary for the head instead of building one; BASE_LABEL names a BASE binary
# in the table (say, its commit).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
seconds="${1:-15}" rounds="${2:-3}" base="${3:-${BASE_BIN:-}}"
out=tests/bench/out/latency
rm -rf "$out" && mkdir -p "$out"
# DATA_ROOT puts the brokers' data there instead of under /tmp: on a tmpfs
# (DATA_ROOT=/dev/shm) the disk drops out of the run, which tells disk stalls from CPU ones.
work="$(mktemp -d)"
data="$(mktemp -d -p "${DATA_ROOT:-/tmp}")"
port_base=19700
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
cleanup() {
    stop_nodes
    [ -d "$work/base-src" ] && git worktree remove --force "$work/base-src" 2>/dev/null
    rm -rf "$work" "$data"
}
trap cleanup EXIT

# The binaries are copied: other builds in the shared target directory must not replace
# them halfway through the run.
if [ -n "${HEAD_BIN:-}" ]; then
    cp "$HEAD_BIN" "$work/fjord-head"
else
    cargo build --release --bin fjord
    cp target/release/fjord "$work/fjord-head"
fi
client="$work/fjord-head"
builds=(head)
head_rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- proto storage controller node Cargo.lock 2>/dev/null || echo +)"
[ -n "${HEAD_BIN:-}" ] && head_rev="$(basename "$HEAD_BIN")"
base_rev=""
if [ -n "$base" ]; then
    if [ -x "$base" ] && [ -f "$base" ]; then
        cp "$base" "$work/fjord-base"
        base_rev="${BASE_LABEL:-$(basename "$base")}"
    else
        # Its own target directory: sharing one lets cargo take the base's workspace
        # crates for the current ones (their build hashes do not depend on the path).
        git worktree add --detach "$work/base-src" "$base" >/dev/null
        (cd "$work/base-src" && CARGO_TARGET_DIR="$root/target/bench-base" cargo build --release --bin fjord)
        cp target/bench-base/release/fjord "$work/fjord-base"
        base_rev="$(git rev-parse --short "$base")"
    fi
    builds=(base head)
fi
echo "head: $head_rev${base_rev:+, base: $base_rev}; $seconds s per run, $rounds rounds"

bootstrap="127.0.0.1:$(kafka_port 1)"
create_topic() {
    "$client" topic create --bootstrap-server "$bootstrap" "$1" --partitions 6 \
        --replication-factor 3 --config min.insync.replicas=2 >/dev/null
}

# produce NAME FLAGS...: one run of the client against topic NAME; writes NAME.json
# (the client's summary, with the CPU of brokers and client added) and NAME.progress.
produce() {
    local name="$1" before times
    shift
    before=$(cpu_ticks)
    sample_memory "$out/$name.meminfo" &
    local sampler=$!
    times=$( {
        TIMEFORMAT='%R %U %S'
        time "$client" bench produce --bootstrap-server "$bootstrap" --topic "$name" \
            --record-size 1024 --acks all --producers 2 --duration "$seconds" --json "$@" \
            >"$out/$name.out" 2>"$out/$name.progress"
    } 2>&1)
    kill "$sampler" && wait "$sampler" 2>/dev/null || true
    tail -1 "$out/$name.out" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
wall, user, system = map(float, sys.argv[1].split())
s["client_cores"] = (user + system) / wall
s["broker_cores"] = float(sys.argv[2]) / float(sys.argv[3]) / wall
print(json.dumps(s))' "$times" "$(($(cpu_ticks) - before))" "$(getconf CLK_TCK)" >"$out/$name.json"
}

# drop_topic NAME: delete it and wait until every node removed its files, then write
# back what is dirty, so neither lands in the next run's latencies.
drop_topic() {
    local deadline=$((SECONDS + 120))
    "$client" topic delete --bootstrap-server "$bootstrap" "$1" >/dev/null
    while compgen -G "$data/*/logs/$1-[0-9]*" >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then echo "topic $1 not deleted" >&2; exit 1; fi
        sleep 0.2 # polling for the deletion with a deadline
    done
    sync
    settle_memory
}

for round in $(seq 1 "$rounds"); do
    for build in "${builds[@]}"; do
        sync # the previous cluster's data is gone; its writeback must be too
        settle_memory
        start_nodes "$work/fjord-$build" 3 "$data" "$out"
        create_topic "peak-$build-$round"
        produce "peak-$build-$round"
        peak=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["records_per_sec"]))' \
            "$out/peak-$build-$round.json")
        drop_topic "peak-$build-$round"
        create_topic "half-$build-$round"
        # Its first 2 s are the warm-up (connections, metadata, cold memory): reported,
        # and also left out of a steady-state p99 beside the run's own.
        produce "half-$build-$round" --throughput $((peak / 2)) --warmup-records "$peak"
        python3 - "$build" "$round" "$peak" "$out/half-$build-$round.json" <<'PY' | tee -a "$out/results.jsonl"
import json, re, sys
build, rnd, peak, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
# The seconds whose slowest acknowledgement took over 50 ms, and the most the whole
# machine had dirty or under writeback meanwhile: stalls that line up with writeback
# point at the disk, stalls without it at the CPU.
maxes = [float(m) for m in re.findall(r"max ([0-9.]+) ms", open(path.replace(".json", ".progress")).read())]
mem = [line.split() for line in open(path.replace(".json", ".meminfo")) if len(line.split()) == 3]
print(json.dumps({"build": build, "round": rnd, "peak": peak, "rate": peak // 2,
                  "stall_seconds": sum(m > 50 for m in maxes), "seconds": len(maxes),
                  "worst_second_ms": max(maxes, default=0),
                  "dirty_mib": max((int(m[1]) for m in mem), default=0) // 1024,
                  "writeback_mib": max((int(m[2]) for m in mem), default=0) // 1024,
                  "records_per_sec": s["records_per_sec"], "errors": s["errors"],
                  "p50": s["latency_ms"]["p50"], "p99": s["latency_ms"]["p99"],
                  "p99_9": s["latency_ms"]["p99_9"], "max": s["latency_ms"]["max"],
                  "steady_p99": s.get("steady_latency_ms", {}).get("p99", float("nan")),
                  "steady_max": s.get("steady_latency_ms", {}).get("max", float("nan")),
                  "broker_cores": s["broker_cores"], "client_cores": s["client_cores"]}))
PY
        stop_nodes
        rm -rf "$data" # freed here, so the next round's settle_memory covers it
    done
done

doc=""
[ -n "$base_rev" ] && [ "${WRITE_DOC:-1}" != 0 ] && doc=docs/benchmarks.md
python3 tests/bench/latency_report.py "$out/results.jsonl" "$seconds" "$head_rev" "$base_rev" $doc
