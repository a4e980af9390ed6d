#!/usr/bin/env bash
# What the broker spends per produced record on validation, CRC and varint decoding
# (issue 34, item 4): the criterion bench storage/benches/validate.rs, built at BASE_REV
# and at HEAD and run alternately in the same session, ROUNDS times each. The current
# bench file is copied into the base's tree when it differs, so both builds measure the
# same batches through the same public API (validate_records, validate_produce). Prints
# the nanoseconds per record of each build and head/base, and writes the table into
# docs/benchmarks.md between the record-work markers.
#   tests/bench/record_work.sh [BASE_REV] [ROUNDS]
# BASE_REV defaults to the commit before the first change of item 4; ROUNDS to 3.
set -euo pipefail
cd "$(dirname "$0")/../.."
first="$(git rev-list -n1 --grep='^Storage: validating a produced record reads its varints' HEAD)"
base="${1:-${first:?cannot find the first commit of item 4; pass BASE_REV}^}"
rounds="${2:-3}"
bench=storage/benches/validate.rs
out=tests/bench/out/record_work
rm -rf "$out" && mkdir -p "$out"
work="$(mktemp -d)"
cleanup() {
    git worktree remove --force "$work/base-src" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if ! git diff --quiet HEAD -- storage; then
    echo "warning: storage/ has uncommitted changes; 'head' is the working tree" >&2
fi

# HEAD as built now: other sessions may commit while this runs.
head_rev="$(git rev-parse --short HEAD)"

# The base gets its own target directory: sharing one lets cargo take the base's
# workspace crates for the current ones (their build hashes do not depend on the path).
git worktree add --detach "$work/base-src" "$base" >/dev/null
if ! cmp -s "$bench" "$work/base-src/$bench"; then
    echo "copying the current $bench into the base tree"
    cp "$bench" "$work/base-src/$bench"
fi
if ! grep -q '^name = "validate"' "$work/base-src/storage/Cargo.toml"; then
    printf '\n[[bench]]\nname = "validate"\nharness = false\n' >>"$work/base-src/storage/Cargo.toml"
fi

# build SRC_DIR TARGET_DIR: builds the bench, prints its executable.
build() {
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -p fjord-storage --bench validate --no-run \
        --message-format=json) | grep -o '"executable":"[^"]*validate-[^"]*"' | tail -1 | cut -d'"' -f4
}
# Copies, so that another session rebuilding the shared target cannot swap the binary.
cp "$(build "$work/base-src" "$PWD/target/record-work-base")" "$work/bench-base"
cp "$(build "$PWD" "$PWD/target")" "$work/bench-head"
base_rev="$(git rev-parse --short "$base")"
echo "base: $base_rev, head: $head_rev"

for round in $(seq 1 "$rounds"); do
    for side in base head; do
        # Each build keeps its own criterion history, so neither is reported as a
        # change against the other.
        CRITERION_HOME="$work/criterion-$side" "$work/bench-$side" --bench \
            >"$out/$side-$round.txt" 2>&1
        grep '^record-work ' "$out/$side-$round.txt" | sed "s/^/$side $round /" |
            tee -a "$out/results.txt"
    done
done

python3 - "$out/results.txt" "$base_rev" "$head_rev" \
    "$rounds" "$(nproc)" <<'EOF'
import re, statistics, sys
path, base_rev, head_rev, rounds, cpus = sys.argv[1:]
runs = {}
for line in open(path):
    side, _round, _tag, case, *fields = line.split()
    kv = dict(f.split("=") for f in fields)
    runs.setdefault((case, side), []).append(kv)
cases = ["100b", "100b_lz4", "1kib", "1kib_lz4"]
def med(case, side, key):
    return statistics.median(float(r[key]) for r in runs[(case, side)])
lines = [
    "<!-- record-work:start -->",
    f"Measured with `tests/bench/record_work.sh`: the criterion bench "
    f"`storage/benches/validate.rs` (the same file for both builds) built at `{base_rev}` "
    f"(before this work) and at `{head_rev}`, run alternately, {rounds} rounds each, "
    f"on this {cpus}-core machine while other sessions were compiling. Each run takes "
    "the fastest of criterion's samples (each the mean of many iterations: other work "
    "only adds time), divided by the records in the batch; the table has the median "
    "of the runs. The batches are ~1 MB "
    "with 7-byte keys, as librdkafka sends them. `validate_produce` is every "
    "check of a produced batch (CRC, varints, offsets, keys, timestamps); the CRC-only "
    "pass (`validate_records`) did not change and shows how noisy the run was.",
    "",
    "| batch | records | validate_produce, base | head | head/base | CRC only, base | head |",
    "|---|---|---|---|---|---|---|",
]
for case in cases:
    if (case, "base") not in runs or (case, "head") not in runs:
        continue
    records = runs[(case, "head")][0]["records"]
    b, h = med(case, "base", "every_record_ns"), med(case, "head", "every_record_ns")
    cb, ch = med(case, "base", "crc_only_ns"), med(case, "head", "crc_only_ns")
    lines.append(f"| {case} | {int(records):,} | {b:.1f} ns | {h:.1f} ns | {h / b:.2f} | "
                 f"{cb:.2f} ns | {ch:.2f} ns |")
lines.append("<!-- record-work:end -->")
table = "\n".join(lines)
print(table)
doc_path = "docs/benchmarks.md"
doc = open(doc_path).read()
if "<!-- record-work:start -->" in doc:
    doc = re.sub(r"<!-- record-work:start -->.*<!-- record-work:end -->", lambda _: table,
                 doc, flags=re.S)
else:
    doc += ("\n## What the broker does per produced record (issue 34, item 4)\n\n"
            + table + "\n")
open(doc_path, "w").write(doc)
EOF
