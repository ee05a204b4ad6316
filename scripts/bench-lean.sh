#!/usr/bin/env bash
# The message path's figures (issue 8) with the lean load generator (`parley bench --lean`: raw
# plaintext connections on one thread, about 0.1 of a core), so the server, not the generator,
# limits them: release build, a fresh plaintext server per run, loopback only.
#
#   ./scripts/bench-lean.sh                   # all rows (about 4 minutes)
#   MESSAGES=2000000 WINDOW=64 ./scripts/bench-lean.sh
#
# Prints one JSON line per run (deliveredPerSecond, p50Ms/p99Ms/p999Ms, benchCores,
# serverMicrosecondsPerMessage, outOfOrder...), then the idle-memory probe's line.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-1000000}
SIZE=${SIZE:-64}
WINDOW=${WINDOW:-256}
IDLE=${IDLE:-10000}

source scripts/release-build.sh
[ "${NO_BUILD:-}" = 1 ] || parley_release_build --product parley >/dev/null
parley="$PWD/.build/release/parley"
work=$(mktemp -d /tmp/parley-bench-lean.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# start_server [server args...]: a fresh plaintext server on a fresh data directory; lean [bench args...]:
# one lean run against a fresh server
start_server() {
    rm -rf "$work/data"
    "$parley" server --host 127.0.0.1 --port 0 --data "$work/data" --log-level error --insecure-plaintext \
        --max-connections $((IDLE + 100)) "$@" >"$work/server.out" 2>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    address=$(sed -n 's/^listening on //p' "$work/server.out")
    [ -n "$address" ] || { cat "$work/server.log"; exit 1; }
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }
lean() {
    start_server
    "$parley" bench --lean --server "$address" --insecure-plaintext --server-pid "$server_pid" --size "$SIZE" \
        --window "$WINDOW" --timeout 600 --json "$@"
    stop_server
}

echo "== 100 clients, $MESSAGES messages, as fast as the window allows"
lean --clients 100 --messages "$MESSAGES"
echo "== 1,000 clients, $MESSAGES messages"
lean --clients 1000 --messages "$MESSAGES"
for rate in 10000 20000 50000; do
    echo "== 100 clients, $rate messages/s offered for 10 s"
    lean --clients 100 --messages $((rate * 10)) --rate "$rate"
done
echo "== 100 clients, 50000 messages/s offered, acknowledgements with the next sends (--ack-with-sends)"
lean --clients 100 --messages 500000 --rate 50000 --ack-with-sends
echo "== overload: 1,000 clients, each with up to 5,000 sends unanswered (serverPeakRSSMiB)"
lean --clients 1000 --messages "$MESSAGES" --window 5000
echo "== memory per idle logged-on connection ($IDLE connections)"
start_server --password-cost 4
python3 bench/idle_connections.py --server "$address" --pid "$server_pid" --connections "$IDLE" --plaintext
echo
stop_server
