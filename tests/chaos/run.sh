#!/usr/bin/env bash
# Runs the container chaos suite: builds the offline image, then every schedule.
#   tests/chaos/run.sh [--long] [FILTER]
# --long runs five times as many faults per schedule; FILTER picks schedules by name.
# Figures go to tests/chaos/out/results.md (rows as in tests/chaos/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--long" ]; then
    export FJORD_CHAOS_PROFILE=long
    shift
fi
export FJORD_REQUIRE_DOCKER=1
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export FJORD_PYTHON="$PWD/.venv/bin/python"
deploy/build-image.sh "${FJORD_IMAGE:-fjord:dev}"
# The Helm-chart schedule renders the chart with helm (fetched by k8s/tools.sh).
FJORD_K8S_TOOLS="$(k8s/tools.sh)"
export FJORD_K8S_TOOLS
mkdir -p tests/chaos/out
export FJORD_CHAOS_RESULTS="$PWD/tests/chaos/out/results.md"
cargo test -p fjord-tests --test chaos -- --test-threads=1 --nocapture "$@"
