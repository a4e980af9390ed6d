#!/usr/bin/env bash
# Builds the offline Fjord image (no registry needed): a static glibc `fjord` binary built
# on this machine, wrapped in the FROM-scratch target of deploy/Dockerfile.
#
#   deploy/build-image.sh [IMAGE]        IMAGE defaults to fjord:dev (or $FJORD_IMAGE)
#
# Environment: FJORD_IMAGE_PROFILE or CARGO_PROFILE (release by default), CARGO_TARGET_DIR (reused if set).
set -euo pipefail
cd "$(dirname "$0")/.."

image="${1:-${FJORD_IMAGE:-fjord:dev}}"
profile="${FJORD_IMAGE_PROFILE:-${CARGO_PROFILE:-release}}"
triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

command -v docker >/dev/null || { echo "error: docker is not installed" >&2; exit 1; }

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
