#!/usr/bin/env bash
# A produce run long enough for the kernel to write back (issue 34, item 5): GB GiB of
# 1 KiB records (default 6.5, about 6.8 million records), acks=1, into one release node,
# 6 partitions, two producer threads. Every second a background loop samples the node's
# resident memory, the system's Dirty and Writeback (/proc/meminfo) and the kernel's
# dirty thresholds (/proc/vmstat); the client's per-second progress lines are stamped as
# they arrive. Sampling goes on after the run until the dirty data is written back.
# tests/bench/long_run_report.py then plots throughput, Dirty and Writeback over time into
# docs/bench/long-run.png and writes a summary into docs/benchmarks.md between the
# long-run markers (WRITE_DOC=0 to skip). The data is deleted at the end.
#   tests/bench/long_run.sh [GB]            (FJORD_BIN=path: that binary instead of a build)
set -euo pipefail
cd "$(dirname "$0")/../.."
gb="${1:-6.5}"
records=$(python3 -c 'import sys; print(int(float(sys.argv[1]) * 1024 * 1024))' "$gb")
out=tests/bench/out/long-run
rm -rf "$out" && mkdir -p "$out"
work="$(mktemp -d)"
pid="" sampler=""
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null || true
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The log needs GB, plus room for its indexes and for anything else on the disk.
need_kib=$(python3 -c 'import sys; print(int((float(sys.argv[1]) * 1.1 + 2) * 1024 * 1024))' "$gb")
free_kib=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
if [ "$free_kib" -lt "$need_kib" ]; then
    echo "$work has $((free_kib / 1024 / 1024)) GiB free; $gb GiB of records need about $((need_kib / 1024 / 1024))" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -c 'import matplotlib' 2>/dev/null ||
    .venv/bin/pip install --quiet --disable-pip-version-check matplotlib
# A copy: other builds in the shared target directory must not replace it mid-run.
if [ -n "${FJORD_BIN:-}" ]; then
    cp "$FJORD_BIN" "$work/fjord"
else
    cargo build --release --bin fjord
    cp target/release/fjord "$work/fjord"
fi
bin="$work/fjord"
rev="$(git rev-parse --short HEAD)"

# The disk's own figure on the same filesystem, for the plot: a sequential write timed
# until it is fsynced.
mkdir -p "$work/data"
sync
"$bin" bench baseline --dir "$work/data" --duration 1 --json | tail -1 >"$out/baseline.json"
tail -1 "$out/baseline.json"

"$bin" serve --data-dir "$work/data" --listeners PLAINTEXT://127.0.0.1:19731 \
    --rpc-listener 127.0.0.1:19732 --admin-listener 127.0.0.1:19733 >"$out/node.log" 2>&1 &
pid=$!
deadline=$((SECONDS + 60))
until curl -fs http://127.0.0.1:19733/readyz >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "node not ready" >&2; exit 1; fi
    sleep 0.2 # polling readiness with a deadline
done
boot=127.0.0.1:19731
"$bin" topic create --bootstrap-server "$boot" long-run --partitions 6 \
    --replication-factor 1 >/dev/null
sync # start with nothing dirty, so what the plot shows is this run's

# One line a second: time, node RSS, Dirty, Writeback (KiB), the kernel's background and
# throttling thresholds for dirty data (pages), and CPU ticks so far: the node's, and the
# whole machine's busy time (everything but idle and iowait).
sample() {
    local rss ticks
    while :; do
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        ticks=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
        echo "$EPOCHREALTIME ${rss:-0} $(awk '/^Dirty:/ {d = $2} /^Writeback:/ {w = $2} END {print d, w}' /proc/meminfo) $(awk '/^nr_dirty_background_threshold/ {b = $2} /^nr_dirty_threshold/ {t = $2} END {print b, t}' /proc/vmstat) ${ticks:-0} $(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)"
        sleep 1 # the sampling interval
    done
}
echo "time rss_kib dirty_kib writeback_kib bg_threshold_pages threshold_pages node_ticks busy_ticks" >"$out/samples.txt"
sample >>"$out/samples.txt" &
sampler=$!

echo "producing $records records of 1 KiB ($gb GiB) to one node, acks=1"
started=$EPOCHREALTIME
# Progress lines (standard error) are stamped as they arrive; the summary goes to a file.
{
    TIMEFORMAT='%R %U %S'
    time { "$bin" bench produce --bootstrap-server "$boot" --topic long-run \
        --record-size 1024 --num-records "$records" --acks 1 --producers 2 \
        --reporting-interval 1000 --json 2>&1 >"$out/summary.out"; }
} 2>"$out/client-time.txt" | while IFS= read -r line; do
    echo "$EPOCHREALTIME $line"
    echo "$line" >&2
done >"$out/progress.txt"
ended=$EPOCHREALTIME
tail -1 "$out/summary.out"

# What the run left unwritten: fsync every file the node wrote (coreutils `sync FILE`),
# timed, while the sampler goes on. (Dirty in /proc/meminfo is the whole system's, so
# other writers on the machine show there too.)
sync_started=$EPOCHREALTIME
find "$work/data" -type f -print0 | xargs -0 sync
drained=$EPOCHREALTIME
kill "$sampler" && wait "$sampler" 2>/dev/null || true
sampler=""
peak_rss=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid" && wait "$pid" 2>/dev/null || true
pid=""
rm -rf "$work/data"

echo "{\"rev\": \"$rev\", \"gb\": $gb, \"records\": $records, \"started\": $started, \"ended\": $ended, \"sync_started\": $sync_started, \"drained\": $drained, \"peak_rss_kib\": $peak_rss, \"clk_tck\": $(getconf CLK_TCK), \"client_time\": \"$(tail -1 "$out/client-time.txt")\"}" >"$out/run.json"
doc=docs/benchmarks.md
[ "${WRITE_DOC:-1}" = 0 ] && doc=""
.venv/bin/python tests/bench/long_run_report.py "$out" docs/bench/long-run.png $doc
