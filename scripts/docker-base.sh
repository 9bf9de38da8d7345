#!/usr/bin/env bash
# The CPU image's base, made on this machine because no image registry may be reachable: a Debian 12
# (bookworm) minbase root file system from debootstrap, imported into Docker. Also starts the Docker
# engine when it is not running (installing docker.io and debootstrap from Debian when missing).
#
#   scripts/docker-base.sh [IMAGE]        # default dalistream-base:bookworm
#
# Idempotent: an existing IMAGE is kept; the root file system is kept as a tarball under
# .cache/docker/, so a machine whose images were pruned imports it again without downloading.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-dalistream-base:bookworm}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARBALL=.cache/docker/debian-$SUITE-minbase.tar
say() { printf '[docker-base] %s\n' "$*"; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

install() {
    say "installing $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null && command -v docker >/dev/null || install docker.io
    say "starting the Docker engine"
    # systemd's unit where systemd runs; elsewhere (containers, CI runners) dockerd itself, as the
    # init script would (that script stops where the open-files limit cannot be raised).
    if [ -d /run/systemd/system ]; then
        $sudo systemctl start docker
    else
        $sudo setsid sh -c 'exec dockerd >>/var/log/docker.log 2>&1' </dev/null &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { say "the Docker engine did not start (see /var/log/docker.log)"; exit 1; }
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE is there"
    exit 0
fi

if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null || install debootstrap
    say "debootstrap $SUITE (minbase) from $MIRROR"
    rootfs=$(mktemp -d)
    trap '$sudo rm -rf "$rootfs"' EXIT
    $sudo debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >/dev/null
    $sudo tee "$rootfs/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
    $sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    mkdir -p "$(dirname "$TARBALL")"
    $sudo tar --numeric-owner -C "$rootfs" -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
fi

say "importing $TARBALL as $IMAGE"
docker import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$TARBALL" "$IMAGE" >/dev/null
say "$IMAGE ready"
