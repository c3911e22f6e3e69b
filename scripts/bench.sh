#!/usr/bin/env bash
# Builds the benchmarks with their anchors (gRPC, NATS request/reply) in build-bench/ and runs one.
# Usage: scripts/bench.sh mesh|election [bench options...]   (e.g. scripts/bench.sh mesh --quick)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:?usage: scripts/bench.sh mesh|election [options...]}
shift
bash scripts/install-deps.sh --bench
bash scripts/build.sh build-bench -DHACOORD_BUILD_TESTS=ON -DHACOORD_BENCH_ANCHORS=ON
exec "build-bench/bench/hacoord_${which}_bench" "$@"
