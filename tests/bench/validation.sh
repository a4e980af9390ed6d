#!/usr/bin/env bash
# What validating every produced record costs end to end: the broker before record
# validation (BASE_REV, by default the commit before it) and the current one, built
# alike and measured alternately in the same run with the same client, on one node:
# 100 B and 1 KiB records, acks=1, uncompressed and lz4. Writes the table into
# docs/benchmarks.md between the validation markers.
#   tests/bench/validation.sh [SECONDS_PER_RUN] [BASE_REV]      (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
base="${2:-$(git rev-list -n1 --grep='^Produce validation as Kafka' HEAD)^}"
out=tests/bench/out/validation
rm -rf "$out" && mkdir -p "$out"
work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    git worktree remove --force "$work/base-src" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The base broker gets its own target directory: sharing one lets cargo take the base's
# workspace crates for the current ones (their build hashes do not depend on the path).
git worktree add --detach "$work/base-src" "$base" >/dev/null
(cd "$work/base-src" && CARGO_TARGET_DIR="$OLDPWD/target/bench-base" cargo build --release --bin fjord)
cp target/bench-base/release/fjord "$work/fjord-base"
cargo build --release --bin fjord
cp target/release/fjord "$work/fjord-new"
client="$work/fjord-new"
echo "base: $(git rev-parse --short "$base"), new: $(git rev-parse --short HEAD)"

run() { # run ROUND BROKER: one node of BROKER, every scenario once
    local round="$1" broker="$2" deadline
    rm -rf "$work/data"
    "$work/fjord-$broker" serve --data-dir "$work/data" \
        --listeners PLAINTEXT://127.0.0.1:19301 --rpc-listener 127.0.0.1:19302 \
        --admin-listener 127.0.0.1:19303 >"$out/node-$broker-$round.log" 2>&1 &
    pid=$!
    deadline=$((SECONDS + 60))
    until curl -fs http://127.0.0.1:19303/readyz >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then echo "node not ready" >&2; exit 1; fi
        sleep 0.2 # polling readiness with a deadline
    done
    for size in 100 1024; do
        for compression in none lz4; do
            local name="${size}b-$compression"
            sync # earlier runs' dirty pages must not land in this one
            "$client" bench produce --bootstrap-server 127.0.0.1:19301 --topic "$name-$round" \
                --partitions 6 --record-size "$size" --acks 1 --compression "$compression" \
                --producers 2 --duration "$seconds" --json 2>/dev/null | tail -1 |
                sed "s/^{/{\"broker\": \"$broker\", \"scenario\": \"$name\", \"round\": $round, /" \
                    >>"$out/results.jsonl"
            tail -1 "$out/results.jsonl"
        done
    done
    kill "$pid" && wait "$pid" 2>/dev/null || true
    pid=""
}

for round in 1 2 3; do
    run "$round" base
    run "$round" new
done

python3 - "$out/results.jsonl" "$(git rev-parse --short "$base")" "$(git rev-parse --short HEAD)" <<'EOF'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base_rev, new_rev = sys.argv[2], sys.argv[3]
scenarios = ["100b-none", "1024b-none", "100b-lz4", "1024b-lz4"]
lines = [
    "<!-- validation:start -->",
    f"Measured with `tests/bench/validation.sh`: one node, acks=1, two producer threads, "
    f"6 partitions, the broker of `{base_rev}` (before record validation) and of `{new_rev}` "
    "alternately, three runs each, the same client; medians of records/s.",
    "",
    "| records | before | with validation | ratio |",
    "|---|---|---|---|",
]
for s in scenarios:
    med = {}
    for b in ("base", "new"):
        med[b] = statistics.median(r["records_per_sec"] for r in rows
                                   if r["scenario"] == s and r["broker"] == b)
    lines.append(f"| {s} | {med['base']:,.0f} | {med['new']:,.0f} | "
                 f"{med['new'] / med['base']:.2f} |")
lines.append("<!-- validation:end -->")
table = "\n".join(lines)
print(table)
path = "docs/benchmarks.md"
doc = open(path).read()
if "<!-- validation:start -->" in doc:
    doc = re.sub(r"<!-- validation:start -->.*<!-- validation:end -->", lambda _: table, doc,
                 flags=re.S)
else:
    doc += "\n## What record validation costs\n\n" + table + "\n"
open(path, "w").write(doc)
EOF
