#!/usr/bin/env bash
# Stops and starts the compose cluster (deploy/docker-compose.yml) many times, as
# operators do: every node at once (`docker compose stop`) and one by one in a random
# order, with Docker's SIGKILL after 10 s. Counts the nodes that needed the SIGKILL (exit
# code 137) and the restarts that waited on a registration of a process that is gone.
#   tests/chaos/stop-cycles.sh [CYCLES]       # default 50; needs the image (deploy/build-image.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."

cycles="${1:-50}"
image="${FJORD_IMAGE:-fjord:dev}"
project=fjord-stop-cycles
file=deploy/docker-compose.yml
FJORD_CLUSTER_SECRET="${FJORD_CLUSTER_SECRET:-$(openssl rand -hex 32)}"
export FJORD_CLUSTER_SECRET
compose() {
    if docker compose version >/dev/null 2>&1; then
        FJORD_IMAGE="$image" docker compose -p "$project" -f "$file" "$@"
    else
        FJORD_IMAGE="$image" docker-compose -p "$project" -f "$file" "$@"
    fi
}
docker image inspect "$image" >/dev/null 2>&1 || deploy/build-image.sh "$image"

ready() {
    python3 - "$@" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 120
for port in sys.argv[1:]:
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                break
        except Exception:
            pass
        if time.time() > deadline:
            sys.exit(f"admin port {port} not ready within 120 s")
        time.sleep(0.2)
PY
}

cleanup() { compose down -v >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
compose up -d >/dev/null
ready 19644 19744 19844

services=(fjord-0 fjord-1 fjord-2)
sigkills=0
phantoms=0
worst_stop=0
worst_ready=0
for i in $(seq 1 "$cycles"); do
    since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    started=$(date +%s%N)
    if [ $((i % 2)) -eq 1 ]; then
        how="all at once"
        compose stop -t 10 >/dev/null 2>&1
    else
        mapfile -t order < <(printf '%s\n' "${services[@]}" | shuf)
        how="one by one: ${order[*]}"
        for s in "${order[@]}"; do
            compose stop -t 10 "$s" >/dev/null 2>&1
        done
    fi
    stop_ms=$(( ($(date +%s%N) - started) / 1000000 ))
    for s in "${services[@]}"; do
        code=$(docker inspect -f '{{.State.ExitCode}}' "$(compose ps -a -q "$s")")
        if [ "$code" = 137 ]; then
            sigkills=$((sigkills + 1))
            echo "cycle $i ($how): $s needed SIGKILL" >&2
        fi
    done
    started=$(date +%s%N)
    compose start >/dev/null 2>&1
    ready 19644 19744 19844
    ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
    for s in "${services[@]}"; do
        if docker logs --since "$since" "$(compose ps -a -q "$s")" 2>&1 | grep -q "registered by another live process"; then
            phantoms=$((phantoms + 1))
            echo "cycle $i ($how): $s waited on a gone process's registration" >&2
        fi
    done
    [ "$stop_ms" -gt "$worst_stop" ] && worst_stop=$stop_ms
    [ "$ready_ms" -gt "$worst_ready" ] && worst_ready=$ready_ms
    echo "cycle $i ($how): stopped in ${stop_ms} ms, ready in ${ready_ms} ms"
done
echo "stop cycles: $cycles, SIGKILLs: $sigkills, phantom registration waits: $phantoms, slowest stop ${worst_stop} ms, slowest restart ${worst_ready} ms"
[ "$sigkills" -eq 0 ] && [ "$phantoms" -eq 0 ]
