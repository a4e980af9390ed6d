#!/usr/bin/env bash
# Runs the whole fault matrix (tests/tests/fault_matrix.rs): SIGTERM, kill -9 and SIGSTOP
# against the active controller, a partition leader, the group coordinator, the
# transaction coordinator and a plain follower, each with the node restarted or left
# down: 30 cases on fresh 3-node clusters of `fjord serve` processes, about 7 minutes.
#   tests/chaos/fault-matrix.sh [FILTER]      # FILTER: case names or parts, e.g. stop-
# The table goes to tests/chaos/out/fault-matrix.md (rows as in tests/chaos/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export FJORD_PYTHON="$PWD/.venv/bin/python"
cargo build --bin fjord
mkdir -p tests/chaos/out
out="$PWD/tests/chaos/out/fault-matrix.md"
{
    echo "Fault matrix, $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD), debug build, $(nproc) cores"
    echo
    echo "| fault | node hit | afterwards | writes ms | commits ms | transactions ms | return ms | exit s | acked | lost+dup | verdict |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
} > "$out"
export FJORD_FAULT_MATRIX="${1:-all}"
export FJORD_FAULT_MATRIX_RESULTS="$out"
status=0
cargo test -p fjord-tests --test fault_matrix -- --nocapture || status=$?
cat "$out"
exit "$status"
