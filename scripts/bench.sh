#!/usr/bin/env bash
# Reproduces README's performance table: release build, a server and the `parley bench` load
# generator on this machine (loopback only), plus the idle-connection memory probe.
#
#   ./scripts/bench.sh            # all measurements (about 5 minutes)
#   CLIENTS=100 MESSAGES=2000000 ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-100}
MESSAGES=${MESSAGES:-1000000}
SIZE=${SIZE:-64}
RATE=${RATE:-50000}
IDLE=${IDLE:-10000}
LOGONS=${LOGONS:-200}

source scripts/release-build.sh
parley_release_build --product parley >/dev/null
parley="$PWD/.build/release/parley"
work=$(mktemp -d /tmp/parley-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# start_server NAME [extra args...]: starts a server, sets $address and $server_pid
start_server() {
    local name=$1; shift
    "$parley" server --host 127.0.0.1 --port 0 --data "$work/$name" --log-level error "$@" >"$work/$name.out" 2>"$work/$name.log" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 300); do
        grep -q "listening on" "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    address=$(sed -n 's/^listening on //p' "$work/$name.out")
    [ -n "$address" ] || { cat "$work/$name.log"; exit 1; }
    # TLS servers print their certificate's fingerprint; the bench clients pin it.
    fingerprint=$(sed -n 's/^tls fingerprint //p' "$work/$name.out")
    export PARLEY_SERVER_FINGERPRINT=$fingerprint
}

# Every measurement runs twice: TLS (the default) and plaintext (--insecure-plaintext on both
# sides), so the cost of TLS is measured on the same machine in the same run.
for mode in tls plaintext; do
    plain=(); [ "$mode" = plaintext ] && plain=(--insecure-plaintext)

    echo "== [$mode] throughput: $CLIENTS clients, $MESSAGES messages of $SIZE bytes, as fast as possible"
    start_server "throughput-$mode" --max-connections 20000 "${plain[@]}"
    "$parley" bench --server "$address" "${plain[@]}" --server-pid "$server_pid" --clients "$CLIENTS" --messages "$MESSAGES" --size "$SIZE" --json | tee "$work/throughput-$mode.json"
    kill "$server_pid"

    echo "== [$mode] latency at $RATE messages/s offered"
    start_server "latency-$mode" "${plain[@]}"
    "$parley" bench --server "$address" "${plain[@]}" --server-pid "$server_pid" --clients "$CLIENTS" --messages $((RATE * 10)) --size "$SIZE" --rate "$RATE" --json | tee "$work/latency-$mode.json"
    kill "$server_pid"

    echo "== [$mode] logons per second at the default password cost"
    start_server "logons-$mode" "${plain[@]}"
    "$parley" bench --server "$address" "${plain[@]}" --clients 4 --logons "$LOGONS" --json | tee "$work/logons-$mode.json"
    kill "$server_pid"

    echo "== [$mode] memory per idle logged-on connection ($IDLE connections)"
    start_server "idle-$mode" --max-connections $((IDLE + 100)) --password-cost 4 "${plain[@]}"
    if [ "$mode" = plaintext ]; then idle=(--plaintext); else idle=(--fingerprint "$fingerprint"); fi
    python3 bench/idle_connections.py --server "$address" --pid "$server_pid" --connections "$IDLE" "${idle[@]}"
    kill "$server_pid"
done
