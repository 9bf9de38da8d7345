#!/usr/bin/env bash
# Mutation testing of the pure core with mutmut: each module's code is mutated (one small change
# at a time: an operator, a constant, a condition, a returned value) and its own tests are run
# against every mutant; a mutant they let pass "survives". A benchmark, not part of CI (minutes
# per module on two cores).
#
#   scripts/mutation.sh [MODULE...]     MODULE: one of the names below (default: all of them)
#
# Each module runs in its own scratch copy of the sources git knows, tracked or new
# (.cache/mutation/MODULE), with a [tool.mutmut] section naming its code and its tests, so a
# run mutates only that module and runs only the tests written for it. Output:
# out/mutation/MODULE.txt (the score, then every surviving mutant's diff) and
# out/mutation/summary.txt (one line per module). Reviewed survivors that no test can kill
# (equivalent mutants) are listed, with why, in tests/mutation_equivalent.txt: they are
# reported apart and not counted against the score.
# Settings: JOBS (2, mutmut's --max-children), NICE (15).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-2}
NICE=${NICE:-15}
OUT=$ROOT/out/mutation
EQUIVALENT=$ROOT/tests/mutation_equivalent.txt

# module -> "code globs | test files"
declare -A MODULES=(
    [rtp]="dalistream/rtp/* | tests/unit/test_rtp_packet.py tests/unit/test_h264_depacketizer.py tests/unit/test_h265_depacketizer.py tests/unit/test_annexb.py tests/unit/test_sps.py tests/unit/test_sdp.py tests/unit/test_frame_times.py tests/property/test_sdp_properties.py tests/property/test_fuzz_depacketizers.py"
    [sampling]="dalistream/pipeline/sampling.py | tests/unit/test_sampling_batching.py"
    [batching]="dalistream/pipeline/batching.py | tests/unit/test_sampling_batching.py"
    [connection_state]="dalistream/ingest/connection_state.py | tests/unit/test_connection_state.py"
    [models]="dalistream/models/* | tests/unit/test_model_arguments.py tests/unit/test_retinaface_postprocess.py tests/unit/test_byo_decoders.py tests/unit/test_device_arrays.py tests/property/test_nms_forms.py"
    [planner]="dalistream/cluster/planner.py | tests/unit/test_cluster_planner.py"
)
ORDER=(rtp sampling batching connection_state models planner)

toml_list() { printf '"%s", ' "$@" | sed 's/, $//'; }

run_module() {
    local name=$1 spec=${MODULES[$1]}
    local code tests
    code=$(xargs <<<"${spec%%|*}")
    tests=$(xargs <<<"${spec#*|}")
    local work=$ROOT/.cache/mutation/$name
    rm -rf "$work"
    mkdir -p "$work" "$OUT"
    git ls-files -z --cached --others --exclude-standard dalistream graphs scripts tests pyproject.toml | xargs -0 cp --parents -t "$work"
    # shellcheck disable=SC2086  # word splitting of the lists is wanted
    cat >> "$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["dalistream"]
only_mutate = [$(toml_list $code)]
pytest_add_cli_args_test_selection = [$(toml_list $tests)]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
also_copy = ["scripts"]  # the fuzz test runs scripts/fuzz_depacketizers.py
EOF
    printf '[mutation] %s: mutating %s, tested by %s\n' "$name" "$code" "$tests"
    local started=$SECONDS
    # DALISTREAM_CACHE: the model and sample clip of this checkout, for the tests that read them
    (cd "$work" && DALISTREAM_CACHE=$ROOT nice -n "$NICE" "$ROOT/.venv/bin/python" -m mutmut run --max-children "$JOBS" >"$work/run.log" 2>&1) || {
        tail -30 "$work/run.log"
        return 1
    }
    (cd "$work" && "$ROOT/.venv/bin/python" - "$name" "$EQUIVALENT" $((SECONDS - started)) >"$OUT/$name.txt") <<'EOF'
import json, subprocess, sys
name, equivalent_file, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
subprocess.run([sys.executable, "-m", "mutmut", "export-cicd-stats"], check=True, capture_output=True)
stats = json.load(open("mutants/mutmut-cicd-stats.json"))
listed = {}
for line in open(equivalent_file):
    if line.strip() and not line.startswith("#"):
        mutant, _, why = line.partition(" ")
        listed[mutant] = why.strip()
results = subprocess.run([sys.executable, "-m", "mutmut", "results"], check=True, capture_output=True, text=True).stdout
survivors = [line.split(":")[0].strip() for line in results.splitlines() if line.strip().endswith(": survived")]
equivalent = [m for m in survivors if m in listed]
open_survivors = [m for m in survivors if m not in listed]
killed = stats["killed"] + stats.get("timeout", 0)
counted = stats["total"] - len(equivalent) - stats.get("skipped", 0)
score = 100.0 * killed / max(counted, 1)
print(f"{name}: {score:.1f} % killed ({killed} of {counted}; {len(equivalent)} equivalent set apart, "
      f"{len(open_survivors)} surviving, {stats.get('no_tests', 0)} not reached by a test) in {seconds} s")
def diff(mutant):
    return subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], capture_output=True, text=True).stdout


for mutant in equivalent:  # with the change itself: names are positions, so a stale entry shows
    changed = [line for line in diff(mutant).splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    print(f"equivalent {mutant}: {listed[mutant]}", *(f"    {line}" for line in changed), sep="\n")
for mutant in open_survivors:
    print(f"\nsurvived {mutant}")
    print(diff(mutant))
EOF
    head -1 "$OUT/$name.txt"
}

selected=("$@")
((${#selected[@]})) || selected=("${ORDER[@]}")
for name in "${selected[@]}"; do
    [ -n "${MODULES[$name]:-}" ] || { echo "unknown module $name (one of: ${ORDER[*]})" >&2; exit 2; }
done
mkdir -p "$OUT"
for name in "${selected[@]}"; do
    run_module "$name"
done
for name in "${ORDER[@]}"; do
    if [ -f "$OUT/$name.txt" ]; then head -1 "$OUT/$name.txt"; fi
done >"$OUT/summary.txt"
