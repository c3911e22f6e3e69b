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
# Each gtest binary also writes its results as XML: when something fails, the failure messages are
# printed again at the very end, after the (long, log-filled) output of the failed tests, so a
# truncated CI log still shows what failed and why.
results=$(pwd)/gtest-results
rm -rf "$results" && mkdir -p "$results"
export GTEST_OUTPUT="xml:$results/"
rc=0
ctest --no-tests=error --output-on-failure --timeout 900 "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
print("==== failure messages (gtest) ====")
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        continue  # a binary that crashed mid-write
    for case in root.iter("testcase"):
        for f in case.findall("failure"):
            lines = (f.get("message") or "").splitlines()
            print(f"{case.get('classname')}.{case.get('name')}:")
            for line in lines[:12]:
                print("    " + line[:300])
PY
fi
exit "$rc"
