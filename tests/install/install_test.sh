#!/usr/bin/env bash
# Usage: install_test.sh BUILD_DIR SOURCE_DIR CXX
# What an embedding developer does: install hacoord, then build against it with CMake
# (find_package(hacoord): hacoord::hacoord, hacoord::manager) and with pkg-config (hacoord,
# hacoord-manager). The prefix is moved after the install: both must be relocatable.
set -euo pipefail
build=$1 src=$2 cxx=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/staged" >/dev/null
mv "$tmp/staged" "$tmp/prefix"
prefix=$tmp/prefix
"$prefix/bin/hacoord" version | grep -q hacoord || fail "installed hacoord version"

# A node config whose NATS server is down: a port nothing listens on.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/node.json" <<JSON
{"clusterId": "install", "nodeId": "n1",
 "nats": {"servers": ["nats://127.0.0.1:$port"], "connectTimeoutMs": 500}}
JSON

# expect_run WANT_RC WANT_TEXT CMD...: the program exits WANT_RC and prints WANT_TEXT.
expect_run() {
  local want_rc=$1 want_text=$2 rc=0 out
  shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = "$want_rc" ] || fail "$* exited $rc, not $want_rc: $out"
  grep -qF -- "$want_text" <<<"$out" || fail "$* did not say '$want_text': $out"
}
check_programs() {  # BASIC MANAGER
  expect_run 2 "usage:" "$1"
  expect_run 3 "missing.json" "$1" "$tmp/missing.json"
  expect_run 1 "127.0.0.1:$port" "$1" "$tmp/node.json"
  expect_run 0 "UNAVAILABLE" "$2" "$tmp/node.json"
}

echo "== CMake: find_package(hacoord)"
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$prefix" -DHACOORD_EXAMPLE="$src/examples/basic/main.cc" >/dev/null
cmake --build "$tmp/consumer" -j2 >/dev/null
check_programs "$tmp/consumer/basic" "$tmp/consumer/manager_consumer"

echo "== pkg-config: hacoord, hacoord-manager"
pcdir=$(dirname "$(find "$prefix" -name hacoord.pc | head -1)")
export PKG_CONFIG_PATH=$pcdir
# shellcheck disable=SC2046  # pkg-config output is meant to be split
"$cxx" -std=c++20 -o "$tmp/basic-pc" "$src/examples/basic/main.cc" $(pkg-config --cflags --libs hacoord)
# shellcheck disable=SC2046
"$cxx" -std=c++20 -o "$tmp/manager-pc" "$src/tests/install/consumer/manager_consumer.cc" \
  $(pkg-config --cflags --libs hacoord-manager)
check_programs "$tmp/basic-pc" "$tmp/manager-pc"
echo "PASS: installed package used from $prefix with CMake and pkg-config"
