#!/usr/bin/env bash
# What compaction does to compressed topics, and how fast the cleaner is: the storage
# crate's `compaction` bench (storage/benches/compaction.rs: 2,000 batches of 20 records
# of 512-byte JSON-like values over 2,000 keys, one batch per producer request, one
# cleaner pass) on BASE (default e018617, before the cleaner kept codecs) and on this
# checkout, alternately in the same run (BASE first, then this checkout, twice; three
# passes each, medians). The same bench file is copied into BASE's tree, since it uses
# only the public API both have. Writes the table into docs/benchmarks.md between the
# compaction markers.
#   tests/bench/compaction.sh [BASE]
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${1:-e018617}"
out=tests/bench/out/compaction
rm -rf "$out" && mkdir -p "$out"
work="$(mktemp -d)"
cleanup() {
    git worktree remove --force "$work/base-src" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

git worktree add --quiet --detach "$work/base-src" "$base"
cp storage/benches/compaction.rs "$work/base-src/storage/benches/compaction.rs"
if ! grep -q 'name = "compaction"' "$work/base-src/storage/Cargo.toml"; then
    printf '\n[[bench]]\nname = "compaction"\nharness = false\n' >>"$work/base-src/storage/Cargo.toml"
fi

# BASE builds into its own target directory: the two trees' crates have the same names
# and versions, so in one directory cargo would take either build for the other.
bench() { # bench SRC_DIR TARGET_DIR VERSION ROUND
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench --quiet -p fjord-storage \
        --bench compaction -- 3 2>/dev/null) |
        sed -n "s/^codec=/version=$3 round=$4 codec=/p" >>"$out/results.txt"
}
for round in 1 2; do
    bench "$work/base-src" "$target_dir/bench-base" base "$round"
    bench "$PWD" "$target_dir" head "$round"
done

python3 - "$out/results.txt" "$base" "$(git rev-parse --short HEAD)" <<'PY'
import re, statistics, sys
rows = [dict(kv.split("=") for kv in l.split()) for l in open(sys.argv[1]) if l.strip()]
base, head = sys.argv[2], sys.argv[3]
lines = [
    "<!-- compaction:start -->",
    f"Measured with `tests/bench/compaction.sh`: `storage/benches/compaction.rs` on {base} "
    f"(rebuilt batches written uncompressed) and {head} (rebuilt batches keep their codec), "
    "alternately in the same run, two rounds of three passes each, medians. 2,000 producer "
    "batches of 20 records (512-byte JSON-like values, 2,000 keys), one cleaner pass; "
    "throughput is the compressed bytes read per second of the pass.",
    "",
    f"| codec | on disk before | after, {base} | after, {head} | cleaner MiB/s, {base} | cleaner MiB/s, {head} | throughput ratio |",
    "|---|---|---|---|---|---|---|",
]
for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
    def pick(version, field):
        return statistics.median(float(r[field]) for r in rows
                                 if r["version"] == version and r["codec"] == codec)
    before = pick("head", "before")
    b_after, h_after = pick("base", "after"), pick("head", "after")
    b_speed, h_speed = pick("base", "mib_per_s"), pick("head", "mib_per_s")
    lines.append(f"| {codec} | {before:,.0f} B | {b_after:,.0f} B ({b_after / before:.2f}x) | "
                 f"{h_after:,.0f} B ({h_after / before:.2f}x) | {b_speed:.1f} | {h_speed:.1f} | "
                 f"{h_speed / b_speed:.2f} |")
lines.append("<!-- compaction:end -->")
table = "\n".join(lines)
print(table)
path = "docs/benchmarks.md"
doc = open(path).read()
if "<!-- compaction:start -->" in doc:
    doc = re.sub(r"<!-- compaction:start -->.*<!-- compaction:end -->", lambda _: table, doc,
                 flags=re.S)
else:
    doc += "\n## What compaction does to compressed topics\n\n" + table + "\n"
open(path, "w").write(doc)
PY
