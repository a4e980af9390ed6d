#!/usr/bin/env bash
# Builds the offline Fjord image (no registry needed): a static glibc `fjord` binary built
# on this machine, wrapped in the FROM-scratch target of deploy/Dockerfile.
#
#   deploy/build-image.sh [IMAGE]        IMAGE defaults to fjord:dev (or $FJORD_IMAGE)
#   deploy/build-image.sh --docker-only [IMAGE]
#       needs only Docker: the Dockerfile's online target builds inside a Rust image
#       (RUST_IMAGE, default rust:1.95-bookworm, pulled if absent) on a Debian runtime
#       (RUNTIME_IMAGE, default debian:bookworm-slim). Without a registry and without
#       those images, it says so and stops; use the default (host toolchain) build then.
#
# Environment: FJORD_IMAGE_PROFILE or CARGO_PROFILE (release by default), CARGO_TARGET_DIR (reused if set).
set -euo pipefail
cd "$(dirname "$0")/.."

docker_only=false
if [ "${1:-}" = --docker-only ]; then
    docker_only=true
    shift
fi
image="${1:-${FJORD_IMAGE:-fjord:dev}}"
profile="${FJORD_IMAGE_PROFILE:-${CARGO_PROFILE:-release}}"
triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

command -v docker >/dev/null || { echo "error: docker is not installed" >&2; exit 1; }

if $docker_only; then
    rust_image="${RUST_IMAGE:-rust:1.95-bookworm}"
    runtime_image="${RUNTIME_IMAGE:-debian:bookworm-slim}"
    for base in "$rust_image" "$runtime_image"; do
        if ! docker image inspect "$base" >/dev/null 2>&1 && ! docker pull "$base" >/dev/null 2>&1; then
            cat >&2 <<MSG
error: --docker-only needs the base image $base, which is not on this machine and
cannot be pulled (no registry reachable?). Either:
  - load it from a machine that has it (docker save $base | docker load), or name a
    local one with RUST_IMAGE=... / RUNTIME_IMAGE=...; or
  - build with this machine's Rust toolchain instead: deploy/build-image.sh $image
    (needs cargo, https://rustup.rs, and gcc; no image is pulled).
MSG
            exit 1
        fi
    done
    echo "== docker build --target online $image (in $rust_image)"
    docker build -f deploy/Dockerfile --target online \
        --build-arg RUST_IMAGE="$rust_image" --build-arg RUNTIME_IMAGE="$runtime_image" \
        -t "$image" .
    docker image ls "$image"
    exit 0
fi

if ! command -v cargo >/dev/null; then
    cat >&2 <<MSG
error: the offline image is built with this machine's Rust toolchain, and cargo is not
installed (https://rustup.rs; gcc is needed too). Where Docker can pull images, build
with Docker alone instead: deploy/build-image.sh --docker-only $image
MSG
    exit 1
fi

# An explicit --target keeps proc-macros and build scripts dynamically linked while the
# binary itself links glibc statically.
echo "== building a static fjord ($profile)"
# OpenSSL (librdkafka's TLS, for the CLI's client commands) is linked in statically too.
OPENSSL_STATIC=1 RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --locked --profile "$profile" --target "$triple" -p fjord-node --bin fjord
dir_name="$profile"
[ "$profile" = dev ] && dir_name=debug
bin="$target_dir/$triple/$dir_name/fjord"
if ldd "$bin" 2>/dev/null | grep -q '=>'; then
    echo "error: $bin is dynamically linked" >&2
    exit 1
fi

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
root="$staging/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$staging/data"
# Debug info stays in target/ for post-mortems; the image carries the stripped binary.
strip --strip-debug -o "$root/usr/local/bin/fjord" "$bin"
printf 'root:x:0:0:root:/:/sbin/nologin\nfjord:x:10001:10001:fjord:/var/lib/fjord:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nfjord:x:10001:\n' >"$root/etc/group"
# Static glibc resolves names through its built-in files and dns services.
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cp deploy/Dockerfile "$staging/Dockerfile"

echo "== docker build $image"
docker build --target offline -t "$image" "$staging"
echo "== built $image"
docker image ls "$image"
