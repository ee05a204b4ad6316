#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Swift toolchain:
# installs the Debian packages the build and tests need, lints, builds with warnings as errors
# and the explicit import check, runs every test target, then the independent-client interop test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the one list in scripts/deps.sh (shared with the demo).
source scripts/deps.sh
parley_install_debian_packages

echo "== lint (swift format lint --strict)"
swift format lint --strict --recursive Package.swift Sources Tests examples

echo "== build (warnings are errors, explicit target dependency import check)"
swift build --build-tests --explicit-target-dependency-import-check error

# Load tests (a flooding client, hundreds of parallel logons at the real password cost) saturate
# the machine for half a minute: they run on their own after the rest, so they cannot starve
# the timing-sensitive tests (direct links, liveness, the LAN lab) running in parallel.
load_tests='OverloadTests|PasswordGuessingTests'
run_tests() {  # NAME ARGS...: one swift test run, its output kept, its failures printed
    local name=$1; shift
    echo "== swift test ($name)"
    set +e
    swift test --skip-build "$@" 2>&1 | tee "/tmp/parley-swift-test-$name.log"
    local status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "swift test ($name) FAILED (exit $status); failing lines:"
        grep -E "✘|error:" "/tmp/parley-swift-test-$name.log" | head -60
        exit "$status"
    fi
}
run_tests all --skip "$load_tests"
run_tests load --filter "$load_tests"

echo "== interop: independent Python client written from docs/PROTOCOL.md"
bash tests/interop/run.sh

echo "== all tests passed"
