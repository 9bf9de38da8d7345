#!/usr/bin/env bash
# Run here (a machine with the package index): fetch the CPython 3.12 x86-64 wheels that the GPU
# machine lacks (it has Python 3.12, torch, cupy-cuda13x, onnx, onnxruntime, numpy, aiohttp,
# prometheus-client, pillow, hypothesis, pytest-timeout, scikit-image, but no index), and pack them
# with the sample clip and the model (both gitignored, so they do not travel with the tree) into
# parts of at most PART_SIZE (default 60M) under wheels/gpu/parts/: the device tool's `carry`
# takes 64 MiB a call, so each call carries one part; scripts/gpu_check.sh reassembles them there.
#
# Idempotent: nothing is fetched when the wheels of this list are there, nothing repacked when the
# parts are of these wheels and media files. Each wheel is pinned and fetched without its
# dependencies (--no-deps): the list names every dependency the GPU machine lacks, one version
# of each. PYTHON (default .venv/bin/python, else python3) runs pip.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=wheels/gpu
WHL=$DIR/whl
PARTS=$DIR/parts
PART_SIZE=${PART_SIZE:-60M}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
say() { printf '[gpu_wheels] %s\n' "$*"; }

WHEELS=(
    # decoding, ingest, logging (dalistream's runtime dependencies the GPU machine lacks)
    av==18.1.0 aiortsp==1.4.0 dpkt==1.9.8 structlog==26.1.0
    # DALI for CUDA 13 and what it needs (nvimgcodec[all]: nvjpeg, nvjpeg2k, nvtiff, nvcomp)
    nvidia-dali-cuda130==2.4.0 astunparse==1.6.3 gast==0.7.0 optree==0.20.0 nvtx==0.2.17 makefun==1.16.0
    libcst==1.9.0 nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-libnvcomp-cu13==5.3.0.16 nvidia-nvjpeg==13.0.4.44
    nvidia-nvjpeg2k-cu13==0.11.0.51 nvidia-nvtiff-cu13==0.8.0.82
    # NVDEC, and the torch engine's converter (torch and torchvision are there)
    pynvvideocodec==2.2.4 onnx2torch==1.5.15
    # the FP16 ONNX file TensorRT and the torch engine build from (pure Python)
    onnxconverter-common==1.16.0
)
MEDIA=(media/sample_1080p25.h264 media/sample_1080p25.gt.json engines/retinaface_mnet025.onnx)

for file in "${MEDIA[@]}"; do
    [ -f "$file" ] || { say "$file missing: run scripts/setup.sh first"; exit 1; }
done

# 1. The wheels: fetched again only when the list changed (then the old ones go: one version each).
wanted=$(printf '%s\n' "${WHEELS[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$WHL/.list" 2>/dev/null)" != "$wanted" ]; then
    rm -rf "$WHL"
    mkdir -p "$WHL"
    say "downloading ${#WHEELS[@]} wheels for cp312 manylinux x86_64 into $WHL"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHL" "${WHEELS[@]}"
    count=$(find "$WHL" -name '*.whl' | wc -l)
    [ "$count" -eq "${#WHEELS[@]}" ] || { say "expected ${#WHEELS[@]} wheels, got $count"; exit 1; }
    echo "$wanted" > "$WHL/.list"
else
    say "wheels up to date in $WHL"
fi

# 2. One tar of wheels + media, split into parts named bundle-NN-of-MM.part (MM: how many there
# are, so the GPU side knows when it has them all), and the whole tar's sha256.
contents=$( (cd "$WHL" && ls -1 ./*.whl) ; sha256sum "${MEDIA[@]}")
stamp=$(printf '%s\n%s\n' "$contents" "$PART_SIZE" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$PARTS/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$PARTS"
    mkdir -p "$PARTS"
    tar -cf "$DIR/bundle.tar" --owner=0 --group=0 --exclude=.list "$WHL" "${MEDIA[@]}"
    sha256sum "$DIR/bundle.tar" | cut -d' ' -f1 > "$PARTS/bundle.sha256"
    split -b "$PART_SIZE" -d -a 2 "$DIR/bundle.tar" "$PARTS/raw-"
    rm "$DIR/bundle.tar"
    total=$(find "$PARTS" -name 'raw-*' | wc -l)
    for raw in "$PARTS"/raw-*; do
        mv "$raw" "$PARTS/bundle-${raw##*raw-}-of-$(printf '%02d' "$total").part"
    done
    echo "$stamp" > "$PARTS/.stamp"
else
    say "parts up to date in $PARTS"
fi

say "wheels: $(find "$WHL" -name '*.whl' | wc -l) files, $(du -sh "$WHL" | cut -f1); bundle sha256 $(cat "$PARTS/bundle.sha256")"
say "parts (carry one a call, with $PARTS/bundle.sha256; then run scripts/gpu_check.sh):"
ls -l "$PARTS"/*.part | awk '{printf "  %s  %.1f MiB\n", $NF, $5 / 1048576}'
say "total $(du -cb "$PARTS"/*.part | tail -1 | awk '{printf "%.1f MiB", $1 / 1048576}') in $(find "$PARTS" -name '*.part' | wc -l) parts"
