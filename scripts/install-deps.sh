#!/usr/bin/env bash
# Installs the Debian 12 packages hacoord builds, tests, fuzzes and demos with (needs root or sudo);
# `--bench` adds the gRPC and protobuf packages of mesh_bench's anchors.
set -euo pipefail
PACKAGES=(
  cmake g++ make pkg-config
  libnats-dev libjsoncpp-dev libspdlog-dev libfmt-dev libboost-dev libssl-dev
  libnl-3-dev libnl-route-3-dev
  libgtest-dev libgmock-dev
  nats-server openssl iproute2 procps python3
  clang-14 libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer and clang's sanitizer runtimes
  clang-format-14              # .ci/run: the code follows .clang-format
)
# --bench: also what mesh_bench's anchors build with (gRPC C++, protoc and its gRPC plugin).
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc)
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
