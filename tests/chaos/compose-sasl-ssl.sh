#!/usr/bin/env bash
# Runs the command lines of deploy/docker-compose.sasl-ssl.yml's header as written, from a
# copy of deploy/ (so the checkout's certificates are left alone), then checks what they
# did: alice's record is read back by the admin, and alice is refused a topic her ACL does
# not name. Each line is retried until it succeeds or 120 s pass, as a person retries
# while the cluster elects its controller. Needs the image (deploy/build-image.sh) and
# target/debug/fjord; cleans up its containers and volumes.
#   tests/chaos/compose-sasl-ssl.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
image="${FJORD_IMAGE:-fjord:dev}"
bin="${FJORD_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}"
[ -x "$bin/fjord" ] || { echo "error: build fjord first ($bin/fjord)" >&2; exit 1; }
docker image inspect "$image" >/dev/null 2>&1 || { echo "error: no image $image (deploy/build-image.sh)" >&2; exit 1; }

work="$(mktemp -d)"
cp -r "$root/deploy" "$work/deploy"
rm -rf "$work/deploy/sasl-ssl/certs"
export COMPOSE_PROJECT_NAME="fjord-sasl-ssl-$$"
export FJORD_IMAGE="$image"
export PATH="$bin:$PATH"

# The header's words on a machine that may lack them: `docker compose` where only the
# standalone docker-compose exists, and sudo where we are root already.
docker() {
    if [ "${1:-}" = compose ] && ! command docker compose version >/dev/null 2>&1; then
        shift
        docker-compose "$@"
    else
        command docker "$@"
    fi
}
if ! command -v sudo >/dev/null 2>&1 || [ "$(id -u)" = 0 ]; then
    sudo() { env "$@"; }
fi
export -f docker sudo 2>/dev/null || true

cleanup() {
    cd "$work"
    docker compose -f deploy/docker-compose.yml -f deploy/docker-compose.sasl-ssl.yml \
        down -v --timeout 10 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The header's command lines: comment lines indented by three blanks, with their
# backslash continuations joined.
mapfile -t commands < <(python3 - "$work/deploy/docker-compose.sasl-ssl.yml" <<'PY'
import sys
lines, current = [], ""
for raw in open(sys.argv[1]):
    if not raw.startswith("#"):
        break
    body = raw[1:].rstrip("\n")
    if current:
        current += " " + body.strip()
    elif body.startswith("   ") and not body.startswith("    "):
        current = body.strip()
    else:
        continue
    if current.endswith("\\"):
        current = current[:-1].rstrip()
    else:
        lines.append(current)
        current = ""
print("\n".join(lines))
PY
)
[ "${#commands[@]}" -ge 8 ] || { echo "error: found only ${#commands[@]} commands in the header" >&2; exit 1; }

cd "$work"
for c in "${commands[@]}"; do
    echo "\$ $c"
    deadline=$((SECONDS + 120))
    # In this shell, not a subshell: a line may export what later lines need.
    until eval "$c" >"$work/out" 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            cat "$work/out" >&2
            echo "error: this line still fails after 120 s: $c" >&2
            docker compose -f deploy/docker-compose.yml -f deploy/docker-compose.sasl-ssl.yml logs --tail 30 >&2 || true
            exit 1
        fi
        sleep 1 # retry interval of a person at the prompt, not synchronization
    done
    head -20 "$work/out"
done

# What the lines did: the admin reads alice's record; alice may not create topics.
read_back="$(kcat -F deploy/sasl-ssl/admin.properties -t orders -C -e -q)"
[ "$read_back" = hello ] || { echo "error: read back '$read_back', not hello" >&2; exit 1; }
if fjord topic create elsewhere --command-config deploy/sasl-ssl/admin.properties \
    --property sasl.username=alice --property sasl.password=alice-secret >/dev/null 2>&1; then
    echo "error: alice created a topic her ACLs do not allow" >&2
    exit 1
fi
echo "compose SASL_SSL header: ${#commands[@]} lines ran as written"
