#!/usr/bin/env bash
# test.sh - set up, build with ASan+UBSan and run every test (unit tests,
# integration tests against the real server, the style check) with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd build-asan
ctest --output-on-failure -j2 --timeout 900
