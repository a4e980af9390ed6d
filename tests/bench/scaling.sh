#!/usr/bin/env bash
# The scaling experiment: a fixed produce-then-consume workload on a loopback cluster that
# grows from 1 to 3 to 5 nodes, balanced after each step (tests/src/bin/scaling_bench.rs).
# Writes docs/scaling.md and docs/scaling.png.
#   tests/bench/scaling.sh [SECONDS_PER_STEP]     (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
mkdir -p tests/bench/out
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check matplotlib
cargo build --release --bin fjord
FJORD_BIN="$PWD/target/release/fjord" cargo run --release -p fjord-tests --bin scaling-bench -- "$seconds" \
    | tee tests/bench/out/scaling.jsonl
.venv/bin/python tests/bench/scaling_report.py tests/bench/out/scaling.jsonl "$seconds" \
    docs/scaling.md docs/scaling.png
echo "wrote docs/scaling.md and docs/scaling.png"
