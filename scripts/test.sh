#!/usr/bin/env bash
# Runs the whole test suite: installs, builds with the tests (warnings as errors), runs ctest.
# Usage: scripts/test.sh [--asan|--tsan] [ctest args...]
# Builds in its own directory (build-test, build-asan, build-tsan), never in demo.sh's build/,
# whose cache has the tests turned off. ctest fails when no test ran. With
# HACOORD_REQUIRE_SYSTEM_TESTS=1 (as CI sets it) a system test that cannot run (not root, no
# network namespaces) fails instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
dir=build-test
flags=()
if [ "${1:-}" = "--asan" ]; then dir=build-asan; flags=(-DHACOORD_ASAN=ON); shift; fi
if [ "${1:-}" = "--tsan" ]; then dir=build-tsan; flags=(-DHACOORD_TSAN=ON); shift; fi
# Forced on: a cache from an older configure (or a hand-made one) must not silently drop them.
bash scripts/build.sh "$dir" -DHACOORD_BUILD_TESTS=ON "${flags[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$dir"
ctest --no-tests=error --output-on-failure --timeout 900 "$@"
