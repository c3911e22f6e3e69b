#!/usr/bin/env bash
# Runs the whole test suite: builds, then every ctest label (unit, sim, integration).
# Usage: scripts/test.sh [--asan|--tsan] [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
dir=build
flags=()
if [ "${1:-}" = "--asan" ]; then dir=build-asan; flags=(-DHACOORD_ASAN=ON); shift; fi
if [ "${1:-}" = "--tsan" ]; then dir=build-tsan; flags=(-DHACOORD_TSAN=ON); shift; fi
bash scripts/build.sh "$dir" "${flags[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir"
ctest --output-on-failure --timeout 900 "$@"
