#!/usr/bin/env bash
# Build an image with BuildKit, handing this machine's CA bundle to the build as the secret "ca"
# (pip trusts it there; it never lands in a layer). Runs scripts/docker-base.sh first, which starts
# the Docker engine if needed and makes the CPU image's base.
#
#   scripts/docker-build.sh [TAG [docker build options...]]     # default TAG: dalistream (Dockerfile)
#   scripts/docker-build.sh dalistream:gpu -f Dockerfile.gpu
#
# CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt): the bundle handed over; none if absent.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-dalistream}
shift || true
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

scripts/docker-base.sh

# A client that builds with BuildKit: Docker 23+ through its buildx plugin; before 23 (Debian 12's
# docker.io is 20.10) the daemon's own, with DOCKER_BUILDKIT=1. Every `docker` on PATH is tried.
client=""
while read -r candidate; do
    version=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if "$candidate" buildx version >/dev/null 2>&1 || [ "${version%%.*}" -lt 23 ] 2>/dev/null; then
        client=$candidate
        break
    fi
done < <(type -ap docker)
if [ -z "$client" ]; then
    echo "[docker-build] no docker client here can use BuildKit: install the buildx plugin" >&2
    exit 1
fi

secret=()
[ ! -s "$ca_bundle" ] || secret=(--secret "id=ca,src=$ca_bundle")
DOCKER_BUILDKIT=1 "$client" build "${secret[@]}" -t "$tag" "$@" .
