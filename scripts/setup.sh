#!/usr/bin/env bash
# setup.sh [release|asan] - install what is missing (Debian packages by name)
# and build with CMake. Safe to run again: it installs nothing that is there.
#   release -> build/       (-O2, the server you run)
#   asan    -> build-asan/  (ASan + UBSan, what the tests run)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}

BUILD_PKGS=(build-essential cmake pkg-config clang-format libwebsockets-dev
  libwebsockets-evlib-ev libev-dev libsimdjson-dev libcurl4-openssl-dev libsqlite3-dev
  libssl-dev zlib1g-dev)
TEST_PKGS=(libcmocka-dev python3 python3-websockets python3-pytest python3-ujson)

want=("${BUILD_PKGS[@]}")
[ "$kind" = asan ] && want+=("${TEST_PKGS[@]}")
# The MCP tests need npm (it fetches the official SDK, the conformance suite and a
# Node 22 binary into the build directory). Debian's nodejs + npm unless some npm exists.
[ "$kind" = asan ] && ! command -v npm >/dev/null 2>&1 && want+=(nodejs npm)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

jobs=$(nproc 2>/dev/null || echo 2)
case "$kind" in
  release)
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPMCP_TESTS=OFF >/dev/null
    cmake --build build -j"$jobs" ;;
  asan)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPMCP_SANITIZE=ON -DPMCP_TESTS=ON >/dev/null
    cmake --build build-asan -j"$jobs" ;;
  *) echo "usage: $0 [release|asan]" >&2; exit 2 ;;
esac
