#!/bin/sh
# tests/run.sh - the whole test suite, on a fresh Debian 12 machine too:
# installs what is missing, builds twice (a normal build, and one with
# AddressSanitizer and UndefinedBehaviorSanitizer), and runs every test of
# both with CTest; then a short libFuzzer run of each parser (clang build). Unit tests use cmocka; integration tests run the real
# daemon against a real Kafka broker and redis-server that the tests start
# on free loopback ports (deploy/stack.sh) and stop when done.
#
#   tests/run.sh              everything
#   tests/run.sh -L unit      only one CTest label (unit, integration,
#                             faults, leaks) in the two main builds
# SP_FUZZ_SECONDS sets the length of each fuzz run (30 s).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

./deploy/install-deps.sh
./deploy/stack.sh fetch

build() {
    dir=$1; shift
    cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
    ninja -C "$dir"
}

build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
build build-asan -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=ON
CC=clang-14 build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_FUZZ=ON \
    -DSP_FUZZ_SECONDS="${SP_FUZZ_SECONDS:-30}"

# librdkafka's and Java's own threads are not ours to judge for leaks at
# exit; every other ASan and UBSan finding fails the run.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

rc=0
if [ "$*" != "-L fuzz" ]; then
    echo "== tests: normal build"
    ctest --test-dir build --output-on-failure "$@" || rc=1
    echo "== tests: ASan+UBSan build"
    ctest --test-dir build-asan --output-on-failure "$@" || rc=1
fi
if [ $# -eq 0 ] || echo "$*" | grep -q fuzz; then
    echo "== tests: libFuzzer targets, a short bounded run each"
    ctest --test-dir build-fuzz --output-on-failure -L fuzz || rc=1
fi
exit $rc
