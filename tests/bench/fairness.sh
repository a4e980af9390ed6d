#!/usr/bin/env bash
# What the front end's fairness limits cost (request bodies charged as they arrive,
# shared fetch budget, connection limits, the rpc port's cluster handshake): the same
# `fjord bench` client against a node of BASE (default 4cc85dc, the landing before them)
# and one of this checkout, alternately in the same run (ROUNDS rounds, which goes first
# alternating). Produce 1 KiB records for the same time (acks=1 on one node, and acks=all
# on a 3-node RF 3 cluster), then read one topic end to end. Both binaries are built with
# the image's profile (ci-image). Writes the table into docs/benchmarks.md between the
# fairness markers.
#   tests/bench/fairness.sh [SECONDS_PER_RUN] [BASE] [ROUNDS]      (default 10, 4cc85dc, 4)
# SECTION names the table's markers in docs/benchmarks.md (default fairness) and
# BASE_NOTE says what BASE lacks, so one change's table does not replace another's.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
base="${2:-4cc85dc}"
rounds="${3:-4}"
out=tests/bench/out/fairness
rm -rf "$out" && mkdir -p "$out"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    git worktree remove --force "$work/base-src" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

triple="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
# BASE builds into its own target directory: both trees' crates have the same names and
# versions, so in one directory cargo takes the first tree's build as fresh for the
# second, and "head" would be BASE again (runs before 2026-12-06 evening did exactly that).
build() { # build SRC_DIR TARGET_DIR OUT: the image's build of fjord, copied to OUT
    (cd "$1" && OPENSSL_STATIC=1 RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        CARGO_TARGET_DIR="$2" cargo build --quiet --profile ci-image \
        --target "$triple" -p fjord-node --bin fjord)
    cp "$2/$triple/ci-image/fjord" "$3"
}
git worktree add --quiet --detach "$work/base-src" "$base"
build "$work/base-src" "$target_dir/bench-base" "$work/fjord-base"
build "$PWD" "$target_dir" "$work/fjord-head"
if cmp -s "$work/fjord-base" "$work/fjord-head"; then
    echo "error: the two builds are the same binary" >&2
    exit 1
fi
secret="fairness-bench-cluster-secret-0123"

start() { # start VERSION NODES: a cluster of that binary; prints its bootstrap
    local version="$1" nodes="$2" voters="" i
    for i in $(seq 1 "$nodes"); do voters+="${voters:+,}$i@127.0.0.1:$((19420 + i))"; done
    for i in $(seq 1 "$nodes"); do
        FJORD_CLUSTER_SECRET="$secret" "$work/fjord-$version" serve --node-id "$i" \
            --data-dir "$work/data-$version-$nodes-$i" --voters "$voters" \
            --listeners "PLAINTEXT://127.0.0.1:$((19400 + i))" \
            --rpc-listener "127.0.0.1:$((19420 + i))" --admin-listener "127.0.0.1:$((19440 + i))" \
            >"$out/node-$version-$nodes-$i.log" 2>&1 &
        pids+=($!)
    done
    local deadline=$((SECONDS + 90))
    for i in $(seq 1 "$nodes"); do
        until curl -fs "http://127.0.0.1:$((19440 + i))/readyz" >/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then echo "node $i not ready" >&2; exit 1; fi
            sleep 0.2 # polling readiness with a deadline
        done
    done
}
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    pids=()
}

bench() { # bench ROUND VERSION NODES MODE TOPIC
    local round="$1" version="$2" nodes="$3" mode="$4" topic="$5"
    local acks=1 rf=1
    [ "$nodes" = 3 ] && acks=all && rf=3
    local extra=(--duration "$seconds" --producers 2 --acks "$acks" --replication-factor "$rf")
    [ "$mode" = consume ] && extra=()
    sync # earlier runs' dirty pages must not land in this one
    local cpu_before cpu_after
    cpu_before="$(broker_cpu_ticks)"
    # The client is head's for both: what is compared is the broker, and a client that
    # batches differently changes the broker's work per record.
    "$work/fjord-head" bench "$mode" --bootstrap-server 127.0.0.1:19401 --topic "$topic" \
        --partitions 6 --record-size 1024 "${extra[@]}" --json 2>/dev/null | tail -1 |
        sed "s/^{/{\"version\": \"$version\", \"nodes\": $nodes, \"mode\": \"$mode\", \"round\": $round, \"broker_cpu_ticks\": CPU, /" \
            >"$out/last.json"
    cpu_after="$(broker_cpu_ticks)"
    local user=$((${cpu_after% *} - ${cpu_before% *})) system=$((${cpu_after#* } - ${cpu_before#* }))
    sed "s/CPU/$((user + system)), \"broker_user_ticks\": $user/" "$out/last.json" >>"$out/results.jsonl"
    tail -1 "$out/results.jsonl"
}

# CPU the brokers used, as "USER SYSTEM" clock ticks: throughput on this 2-core machine
# swings with scheduling, while CPU spent per record is what a change costs. System time
# is mostly the kernel copying records into the page cache, whose cost per byte swung
# 2x between runs of one binary here, so user time is reported on its own too.
broker_cpu_ticks() {
    local user=0 system=0 p fields
    for p in ${pids[@]+"${pids[@]}"}; do
        # utime and stime are the 14th and 15th fields, after the ")" ending the name.
        fields="$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null)" || continue
        user=$((user + $(echo "$fields" | awk '{print $12}')))
        system=$((system + $(echo "$fields" | awk '{print $13}')))
    done
    echo "$user $system"
}

for round in $(seq 1 "$rounds"); do
    order=(base head)
    [ $((round % 2)) = 0 ] && order=(head base)
    for nodes in 1 3; do
        for version in "${order[@]}"; do
            rm -rf "$work"/data-*
            start "$version" "$nodes"
            bench "$round" "$version" "$nodes" produce "t-$round"
            bench "$round" "$version" "$nodes" consume "t-$round"
            stop
        done
    done
done

python3 - "$out/results.jsonl" "$base" "$(git rev-parse --short HEAD)" "$rounds" \
    "${SECTION:-fairness}" "${BASE_NOTE:-before the fairness limits and the rpc handshake}" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base, head, rounds, section, note = sys.argv[2:7]
lines = [
    f"<!-- {section}:start -->",
    f"Measured with `tests/bench/fairness.sh`: the same `fjord bench` client (head's) against {base} "
    f"({note}) and {head}, alternately in the same "
    f"run (which goes first alternating), {rounds} runs each, both built with the image's "
    "profile; 1 KiB records, produce for the same time with two producers, then read the "
    "topic end to end; medians.",
    "",
    f"| scenario | {base} | {head} | ratio | broker CPU per record, {base} | {head} | ratio "
    f"| of it user, {base} | {head} | ratio |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
tick_us = 1e6 / int(__import__("os").sysconf("SC_CLK_TCK"))
for nodes, label in ((1, "1 node, acks=1"), (3, "3 nodes, RF 3, acks=all")):
    for mode in ("produce", "consume"):
        med = {}
        for version in ("base", "head"):
            vals = [r for r in rows if r["mode"] == mode and r["nodes"] == nodes
                    and r["version"] == version]
            med[version] = (statistics.median(r["records_per_sec"] for r in vals),
                            statistics.median(r["mb_per_sec"] for r in vals),
                            statistics.median(r.get("broker_cpu_ticks", 0) * tick_us
                                              / max(r["records"], 1) for r in vals),
                            statistics.median(r.get("broker_user_ticks", 0) * tick_us
                                              / max(r["records"], 1) for r in vals))
        b, h = med["base"], med["head"]
        ratio = lambda i: f"{h[i] / b[i]:.2f}" if b[i] > 0 else "-"
        lines.append(f"| {label}, {mode} | {b[0]:,.0f} rec/s ({b[1]:.1f} MB/s) | "
                     f"{h[0]:,.0f} rec/s ({h[1]:.1f} MB/s) | {h[0] / b[0]:.2f} | "
                     f"{b[2]:.2f} µs | {h[2]:.2f} µs | {ratio(2)} | "
                     f"{b[3]:.2f} µs | {h[3]:.2f} µs | {ratio(3)} |")
lines.append(f"<!-- {section}:end -->")
table = "\n".join(lines)
print(table)
path = "docs/benchmarks.md"
doc = open(path).read()
start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
if start in doc:
    doc = re.sub(re.escape(start) + ".*" + re.escape(end), lambda _: table, doc, flags=re.S)
else:
    doc += f"\n## Same-run comparison: {section}\n\n" + table + "\n"
open(path, "w").write(doc)
PY
