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
swift format lint --strict --recursive Package.swift Sources Tests examples Snippets

echo "== build (warnings are errors, explicit target dependency import check)"
swift build --build-tests --explicit-target-dependency-import-check error

# Load tests (a flooding client, hundreds of parallel logons at the real password cost) saturate
# the machine for half a minute, and the node tests on loopback use 1 s dial and peer timeouts
# to stay quick: with every other suite running in parallel on 2 cores, those deadlines are
# missed by the machine, not by the code. So the node tests, then the load tests, run on their
# own after the rest.
load_tests='OverloadTests|PasswordGuessingTests'
timing_tests='ParleyNodeTests'
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
run_tests all --skip "$load_tests|$timing_tests"
# Known flake (issue 9, open): aPeerWhoseLinkDiesIsShownDownDespiteDiscovery fails about once in
# ten runs (a lingering advertisement can show a dead peer online again). The node group gets
# one more run if its first fails, and the failure stays in the log, marked.
if ! (run_tests node --filter "$timing_tests"); then
    echo "== RETRY: the node tests failed once (failing lines above); running them again"
    run_tests node-retry --filter "$timing_tests"
fi
run_tests load --filter "$load_tests"

# A short kill campaign (docs/PROTOCOL.md section 11.6; README "Guarantees"): the server is
# killed with SIGKILL 5 times under load; lost, duplicated and reordered messages must be 0.
echo "== kill campaign (short: 5 kills of the server under load)"
KILLS=5 NO_BUILD=1 ./scripts/kill-campaign.sh

echo "== docs (DocC, warnings are errors; the snippets the articles show; the module graph)"
./scripts/docs.sh
./scripts/module-graph.sh --check

echo "== service files: the install script stages the binary, the unit and the configuration"
stage=$(mktemp -d)
PARLEY_BINARY=.build/debug/parley DESTDIR="$stage" ./scripts/install-server.sh >/dev/null
for file in usr/local/bin/parley etc/systemd/system/parley-server.service etc/parley/server.json etc/parley/server.env; do
    [ -e "$stage/$file" ] || { echo "install-server.sh did not stage $file"; exit 1; }
done
# The default configuration file is valid: a server started from it listens.
"$stage/usr/local/bin/parley" server --config "$stage/etc/parley/server.json" --data "$stage/data" \
    --port 0 --host 127.0.0.1 >"$stage/server.out" 2>"$stage/server.err" &
server=$!
for _ in $(seq 1 100); do
    grep -q "^listening on" "$stage/server.out" && break
    kill -0 "$server" 2>/dev/null || { echo "the default server.json is refused:"; cat "$stage/server.err"; exit 1; }
    sleep 0.1
done
grep -q "^listening on" "$stage/server.out" || { echo "a server from the default server.json did not listen"; exit 1; }
kill "$server"; wait "$server" || true
if command -v systemd-analyze >/dev/null; then
    sed "s#/usr/local/bin/parley#$stage/usr/local/bin/parley#" "$stage/etc/systemd/system/parley-server.service" \
        >"$stage/parley-server.service"
    systemd-analyze verify "$stage/parley-server.service"
fi
rm -rf "$stage"

echo "== interop: independent Python client written from docs/PROTOCOL.md"
bash tests/interop/run.sh

echo "== all tests passed"
