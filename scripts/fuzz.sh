#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan+UBSan, in build-fuzz/) and runs each for SECONDS.
# Usage: scripts/fuzz.sh [SECONDS (default 60)] [TARGET...]
#   targets: config_fuzz lease_fuzz status_fuzz control_fuzz floor_fuzz mesh_frame_fuzz
# Fails when any target crashes, leaks, hangs or breaks its round-trip check. The input that did
# it stays in build-fuzz/crashes/<target>/ (and is printed in base64 for CI logs); replay it with
# `build-fuzz/tests/fuzz/<target> <file>`. Seeds are tests/fuzz/corpus/<target>/ (read only); what
# the fuzzer adds goes to build-fuzz/corpus/<target>/ and is reused by the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config_fuzz lease_fuzz status_fuzz control_fuzz floor_fuzz mesh_frame_fuzz)
dir=build-fuzz
command -v clang++-14 >/dev/null || { echo "fuzz.sh: no clang++-14: run scripts/install-deps.sh"; exit 1; }

# Warnings are errors here as in every CI build; only the fuzz targets and their libraries build.
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DHACOORD_FUZZ=ON -DHACOORD_WERROR=ON >/dev/null
cmake --build "$dir" -j"$(nproc)" --target "${targets[@]}"

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in "${targets[@]}"; do
  seeds=tests/fuzz/corpus/$t
  [ -d "$seeds" ] || { echo "fuzz.sh: no seed corpus $seeds"; exit 1; }
  mkdir -p "$dir/corpus/$t" "$dir/crashes/$t"
  log="$dir/$t.log"
  stamp="$dir/crashes/$t/.run-started"
  touch "$stamp"  # inputs kept by earlier runs are not this run's
  echo "== $t: ${seconds}s from $(ls "$seeds" | wc -l) seeds ($log)"
  # -timeout: an input taking 10 s is a hang (libFuzzer's default is 20 minutes).
  rc=0
  "$dir/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$dir/crashes/$t/" "$dir/corpus/$t" "$seeds" >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | sed 's/^/   /'
  else
    failed+=("$t")
    echo "FAIL: $t (exit code $rc); from $log, the first report (top of its stack) and the end:"
    # The first sanitizer/libFuzzer report, not the tail: a deep recursion's stack fills the tail.
    awk '/terminate called|runtime error|ERROR: |ERROR: libFuzzer/ && !n {n = NR} n && NR < n + 25' "$log"
    echo "   ..."
    tail -n 12 "$log"
    find "$dir/crashes/$t" -type f -newer "$stamp" ! -name .run-started | while read -r f; do
      echo "-- kept input $f ($(stat -c %s "$f") bytes), base64:"
      head -c 4096 "$f" | base64
    done
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz.sh: ${targets[*]}: no crash in ${seconds}s each"
