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

echo "== swift test"
set +e
swift test --skip-build 2>&1 | tee /tmp/parley-swift-test.log
swift_status=${PIPESTATUS[0]}
set -e
if [ "$swift_status" -ne 0 ]; then
    echo "swift test FAILED (exit $swift_status); failing lines:"
    grep -E "✘|error:" /tmp/parley-swift-test.log | head -60
    exit "$swift_status"
fi

echo "== interop: independent Python client written from docs/PROTOCOL.md"
bash tests/interop/run.sh

echo "== all tests passed"
