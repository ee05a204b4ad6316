#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Swift toolchain:
# installs the Debian packages the build and tests need, lints, builds with warnings as errors
# and the explicit import check, runs every test target, then the independent-client interop test.
set -euo pipefail
cd "$(dirname "$0")/.."

# SQLite for the store; Avahi, D-Bus, iproute2 and iptables for the LAN lab (network namespaces,
# a firewall rule to cut a direct link).
packages=(libsqlite3-dev python3 libavahi-client-dev avahi-daemon avahi-utils dbus iproute2 iptables)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

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
