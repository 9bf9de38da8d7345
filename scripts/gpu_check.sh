#!/usr/bin/env bash
# Run ON the GPU machine, from a copy of the repository: installs what scripts/gpu_wheels.sh
# packed, runs the GPU tests, then benches the GPU pipeline (NVDEC + DALI + torch FP16) on file
# sources. Everything goes to $OUT (default out/gpu_check): gpu_check.log, gpu_tests.xml,
# bench.json and nvidia-smi.csv (GPU, decoder utilization and memory each second of the bench).
#
# The wheels come as parts (wheels/gpu/parts/bundle-NN-of-MM.part, one carried per call with
# bundle.sha256: the machine keeps them while it stays warm). Until all MM parts are there the
# script only lists them and exits 0, so every call can run it; with all of them it reassembles
# and checks the bundle, unpacks the wheels, the sample clip and the model, and goes on. Repeat
# runs on the same machine reuse the unpacked bundle and the venv.
#
# The venv (.gpuvenv) sees the machine's own packages (torch, cupy, onnxruntime, pytest...):
# made with --system-site-packages and, as the machine's python3 is itself a venv whose packages
# that option does not reach, a .pth file naming its site-packages, behind the venv's own.
#
# Test failures do not stop the bench; the exit status is the first non-zero of tests and bench.
# Settings: PYTHON (python3), BENCH_SWEEP (8,32,64), BENCH_DURATION (20 s), BENCH_WARMUP (5 s),
# TEST_TIMEOUT (300 s), BENCH_TIMEOUT (420 s).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out/gpu_check}
PYTHON=${PYTHON:-python3}
BENCH_SWEEP=${BENCH_SWEEP:-8,32,64}
BENCH_DURATION=${BENCH_DURATION:-20}
BENCH_WARMUP=${BENCH_WARMUP:-5}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-420}
PARTS=wheels/gpu/parts
WHL=wheels/gpu/whl
VENV=.gpuvenv
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

say() { printf '\n[gpu_check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

unpack() {
    shopt -s nullglob
    local parts=("$PARTS"/bundle-*-of-*.part)
    shopt -u nullglob
    if ((${#parts[@]} == 0)); then
        if compgen -G "$WHL/*.whl" >/dev/null; then
            say "no parts; using the wheels already in $WHL"
        else
            say "WARNING: no wheels (carry $PARTS/bundle-NN-of-MM.part, made by scripts/gpu_wheels.sh); the GPU packages may be missing"
        fi
        return 0
    fi
    local total=${parts[0]##*-of-}
    total=$((10#${total%.part}))
    if ((${#parts[@]} < total)); then
        say "have ${#parts[@]} of $total parts; carry the others (one a call), then run this again:"
        ls -l "${parts[@]}"
        WAITING=1
        return 0
    fi
    local want
    want=$(cat "$PARTS/bundle.sha256" 2>/dev/null || echo unknown)
    if [ "$want" != unknown ] && [ "$(cat wheels/gpu/.unpacked 2>/dev/null)" = "$want" ]; then
        say "bundle $want already unpacked"
        return 0
    fi
    say "reassembling ${#parts[@]} parts"
    local bundle=/tmp/gpu-bundle.tar
    cat "${parts[@]}" > "$bundle"
    local got
    got=$(sha256sum "$bundle" | cut -d' ' -f1)
    if [ "$want" = unknown ]; then
        say "WARNING: no $PARTS/bundle.sha256 carried; cannot check the bundle ($got)"
    elif [ "$got" != "$want" ]; then
        say "bundle sha256 $got, expected $want: parts of different bundles? Carry them again"
        rm -f "$bundle"
        exit 1
    fi
    rm -rf "$WHL"
    tar -xf "$bundle"
    rm -f "$bundle"
    echo "$got" > wheels/gpu/.unpacked
    ls -l "$WHL" media engines
}

make_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV (system site packages) with $("$PYTHON" --version)"
        "$PYTHON" -m venv --system-site-packages "$VENV" || {
            rm -rf "$VENV"
            "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"  # no ensurepip: the host's pip runs it
        }
    fi
    local site
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' > "$site/_gpu_host_packages.pth"
    local want
    want=$( (ls "$WHL" 2>/dev/null; sha256sum pyproject.toml) | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$want" ]; then
        if compgen -G "$WHL/*.whl" >/dev/null; then
            say "installing $(ls "$WHL"/*.whl | wc -l) wheels"
            "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
                --disable-pip-version-check "$WHL"/*.whl
        fi
        say "installing dalistream (editable, no dependencies)"
        "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation --disable-pip-version-check -e .
        echo "$want" > "$VENV/.installed"
    fi
    "$VENV/bin/python" -m pip check --disable-pip-version-check || say "(pip check: the conflicts above are reported, not fixed)"
}

report_machine() {
    say "machine"
    nvidia-smi -L || true
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    # NVDEC needs libnvcuvid, and PyNvVideoCodec loads libnvidia-encode (NVENC) even to decode
    ldconfig -p | grep -E 'libcuda\.so\.1|libnvcuvid|libnvidia-encode' || echo 'ldconfig: no libcuda/libnvcuvid/libnvidia-encode'
    ls /usr/local/nvidia/lib64 2>/dev/null | grep -E 'libcuda\.so|nvcuvid|nvidia-encode' || true
    "$VENV/bin/python" - <<'EOF' || true
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "cupy", "nvidia.dali", "PyNvVideoCodec", "av", "onnxruntime", "onnx", "onnx2torch", "numpy", "structlog", "aiortsp"):
    try:
        module = importlib.import_module(name)
        print(f"{name:16} {getattr(module, '__version__', '?'):24} {getattr(module, '__file__', '')}")
    except Exception as exc:  # report every one, whatever is broken
        print(f"{name:16} NOT IMPORTABLE: {type(exc).__name__}: {exc}")
try:
    import torch
    print("torch CUDA", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    import cupy
    print("cupy CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as exc:
    print("CUDA probe failed:", exc)
from dalistream.pipeline.preflight import device_plan
print("dalistream device plan for 'auto':", device_plan("auto"))
EOF
}

run_tests() {
    say "GPU tests (timeout ${TEST_TIMEOUT}s)"
    timeout "$TEST_TIMEOUT" "$VENV/bin/python" -m pytest -q -rs -m gpu tests/gpu -p no:cacheprovider \
        --junitxml="$OUT/gpu_tests.xml"
}

run_bench() {
    say "bench: file sources, sweep $BENCH_SWEEP, ${BENCH_WARMUP}s warm-up + ${BENCH_DURATION}s each, GPU torch FP16 (timeout ${BENCH_TIMEOUT}s)"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.decoder,memory.used --format=csv -l 1 > "$OUT/nvidia-smi.csv" 2>&1 &
    local smi=$!
    local rc=0
    timeout "$BENCH_TIMEOUT" "$VENV/bin/python" -m dalistream bench --source file --sweep "$BENCH_SWEEP" \
        --duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP" --device gpu --engine torch --precision fp16 \
        --out /tmp/gpu_check_bench --json > "$OUT/bench.json" || rc=$?
    kill "$smi" 2>/dev/null || true
    wait "$smi" 2>/dev/null || true
    return "$rc"
}

main() {
    say "repository $(pwd), output $OUT"
    WAITING=""
    unpack
    [ -z "$WAITING" ] || return 0  # parts still to come: nothing more to do in this call
    make_venv
    report_machine
    local tests=0 bench=0
    run_tests || tests=$?
    run_bench || bench=$?
    say "exit codes: tests $tests, bench $bench (124: timed out)"
    ((tests == 0)) || return "$tests"
    return "$bench"
}

main 2>&1 | tee -a "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
