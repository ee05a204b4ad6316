#!/usr/bin/env bash
# Mass reconnect (issue 8 item 5): N clients logged on to a server; the server is killed
# (SIGKILL, kill -9) and started again on the same port and data directory at the DEFAULT
# password cost; every client reconnects and logs on with its resumption token
# (docs/PROTOCOL.md section 9.2.1) at once. Prints the generator's report: time from the moment
# the restarted server accepts to the last logon, logons/s, refusals by error code, p50/p99/max
# time to logged on, server CPU during the storm.
#
#   ./scripts/bench-reconnect.sh                  # N=10000, lean generator, plaintext, release build
#   N=1000 ./scripts/bench-reconnect.sh
#   TLS=1 ./scripts/bench-reconnect.sh            # the lean generator over TLS 1.3 (one TLS context for
#       all its connections, the server's certificate pinned by fingerprint): the storm then includes
#       10,000 TLS handshakes on the server
#   REGISTER_COST=4 ./scripts/bench-reconnect.sh  # registers with cheap password hashes: saves the
#       ~3 minutes 10,000 registrations take at the default cost; tokens do not depend on it, and the
#       restarted server runs at the default cost (14) either way
#   GENERATOR=client SIGNAL=TERM N=1000 ./scripts/bench-reconnect.sh
#       ParleyClient-based clients over TLS that reconnect by themselves (their back-off and retry
#       preset RETRY=local|lan), with a graceful stop instead of kill -9; the server log tells
#       token logons from password logons
#   BUILD=debug ...                               # .build/debug instead of a release build
#   PERF=/tmp/storm.data ...                      # perf record -g of the restarted server during the storm
#   SERVER_PARLEY=/path/to/parley ...             # another build's server (a before/after comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/release-build.sh
N=${N:-10000}
BUILD=${BUILD:-release}
TIMEOUT=${TIMEOUT:-1200}
REGISTER_COST=${REGISTER_COST:-14}
GENERATOR=${GENERATOR:-lean}
SIGNAL=${SIGNAL:-KILL}
RETRY=${RETRY:-local}
TLS=${TLS:-0}

if [ "$BUILD" = release ] && [ "${NO_BUILD:-}" != 1 ]; then parley_release_build --product parley >/dev/null; fi
parley="$PWD/.build/$BUILD/parley"
server_parley=${SERVER_PARLEY:-$parley}
work=$(mktemp -d /tmp/parley-reconnect.XXXXXX)
server_pid=""
bench_pid=""
cleanup() {
    for p in $server_pid $bench_pid; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# Both the server and the generator hold N connections.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((N + 200)) ] || { echo "ulimit -n $(ulimit -n) is too low for N=$N" >&2; exit 1; }

transport=()
bench_transport=()
if [ "$GENERATOR" = lean ] && [ "$TLS" = 1 ]; then
    bench_transport=(--lean --server-pid-file "$work/server.pid")
elif [ "$GENERATOR" = lean ]; then
    transport=(--insecure-plaintext)
    bench_transport=(--lean --insecure-plaintext --server-pid-file "$work/server.pid")
fi

# start_server RUN PORT COST: starts a server at password cost COST on the shared data
# directory; sets $address, $server_pid, $work/server.pid and PARLEY_SERVER_FINGERPRINT.
start_server() {
    local run=$1 port=$2 cost=$3
    "$server_parley" server --host 127.0.0.1 --port "$port" --data "$work/data" --max-connections $((N + 100)) \
        --password-cost "$cost" "${transport[@]}" \
        --log-level info >"$work/server-$run.out" 2>"$work/server-$run.log" &
    server_pid=$!
    echo "$server_pid" >"$work/server.pid.new" && mv "$work/server.pid.new" "$work/server.pid"
    for _ in $(seq 1 300); do
        grep -q "listening on" "$work/server-$run.out" 2>/dev/null && break
        sleep 0.1
    done
    address=$(sed -n 's/^listening on //p' "$work/server-$run.out")
    [ -n "$address" ] || { cat "$work/server-$run.log" >&2; exit 1; }
    export PARLEY_SERVER_FINGERPRINT
    PARLEY_SERVER_FINGERPRINT=$(sed -n 's/^tls fingerprint //p' "$work/server-$run.out")
}

echo "== $(uptime)"
start_server 1 0 "$REGISTER_COST"
port=${address##*:}
echo "== $N clients ($GENERATOR) register and log on to $address (password cost $REGISTER_COST)"
"$parley" bench --server "$address" --retry "$RETRY" --clients "$N" --reconnect-ready-file "$work/ready" \
    "${bench_transport[@]}" --timeout "$TIMEOUT" --json >"$work/bench.json" 2>"$work/bench.log" &
bench_pid=$!
while [ ! -e "$work/ready" ]; do
    kill -0 "$bench_pid" 2>/dev/null || { cat "$work/bench.log" >&2; exit 1; }
    sleep 0.2
done
echo "== all logged on; SIG$SIGNAL to the server, then a new one on port $port at the default password cost (14)"
kill -"$SIGNAL" "$server_pid"
wait "$server_pid" 2>/dev/null || true
start_server 2 "$port" 14
perf_pid=""
if [ -n "${PERF:-}" ]; then
    perf record -g -p "$server_pid" -o "$PERF" >/dev/null 2>&1 &
    perf_pid=$!
fi
wait "$bench_pid" && status=0 || status=$?
bench_pid=""
if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
cat "$work/bench.json"
echo
if [ "$GENERATOR" != lean ]; then
    resumed=$(grep -c '"credential": "resumption token"\|credential=resumption token' "$work/server-2.log" || true)
    password=$(grep -c '"credential": "password"\|credential=password' "$work/server-2.log" || true)
    echo "logons after the restart: $resumed by resumption token, $password by password"
fi
[ "$status" = 0 ] || tail -5 "$work/bench.log" >&2
exit "$status"
