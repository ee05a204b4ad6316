#!/usr/bin/env bash
# Mass reconnect (issue 8 item 5): N clients logged on to a server at the DEFAULT password cost;
# the server is stopped (SIGTERM) and started again on the same port with the same data
# directory; `parley bench --reconnect-ready-file` reports how long until every client has
# logged on again by itself, and the server's log says how many of those logons used a
# resumption token (docs/PROTOCOL.md section 9.2.1) rather than the password.
#
#   ./scripts/bench-reconnect.sh              # N=1000
#   N=10000 ./scripts/bench-reconnect.sh      # registering 10,000 users at the default cost takes minutes
#   BUILD=debug ./scripts/bench-reconnect.sh  # use .build/debug instead of a release build
#   REGISTER_COST=4 N=10000 ./scripts/bench-reconnect.sh
#       registers the users with cheap password hashes to save minutes of set-up; the restarted
#       server still runs at the default cost, but a password fallback would then be cheap too:
#       the server-log count at the end tells token logons from password logons.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
BUILD=${BUILD:-release}
TIMEOUT=${TIMEOUT:-1200}
REGISTER_COST=${REGISTER_COST:-14}
RETRY=${RETRY:-local}   # the clients' retry preset: local (1 s connect timeout, back-off to 1 s) or lan

if [ "$BUILD" = release ]; then swift build -c release --product parley >/dev/null; fi
parley="$PWD/.build/$BUILD/parley"
work=$(mktemp -d /tmp/parley-reconnect.XXXXXX)
server_pid=""
bench_pid=""
cleanup() {
    for p in $server_pid $bench_pid; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((N + 200)) ] || { echo "ulimit -n $(ulimit -n) is too low for N=$N" >&2; exit 1; }

# start_server RUN PORT COST: starts a server at password cost COST on the shared data
# directory; sets $address, $server_pid and PARLEY_SERVER_FINGERPRINT.
start_server() {
    local run=$1 port=$2 cost=$3
    "$parley" server --host 127.0.0.1 --port "$port" --data "$work/data" --max-connections $((N + 100)) \
        --password-cost "$cost" \
        --log-level info >"$work/server-$run.out" 2>"$work/server-$run.log" &
    server_pid=$!
    for _ in $(seq 1 300); do
        grep -q "listening on" "$work/server-$run.out" 2>/dev/null && break
        sleep 0.1
    done
    address=$(sed -n 's/^listening on //p' "$work/server-$run.out")
    [ -n "$address" ] || { cat "$work/server-$run.log" >&2; exit 1; }
    export PARLEY_SERVER_FINGERPRINT
    PARLEY_SERVER_FINGERPRINT=$(sed -n 's/^tls fingerprint //p' "$work/server-$run.out")
}

start_server 1 0 "$REGISTER_COST"
port=${address##*:}
echo "== $N clients register and log on to $address (password cost $REGISTER_COST)"
"$parley" bench --server "$address" --retry "$RETRY" --clients "$N" --reconnect-ready-file "$work/ready" \
    --timeout "$TIMEOUT" --json >"$work/bench.json" 2>"$work/bench.log" &
bench_pid=$!
while [ ! -e "$work/ready" ]; do
    kill -0 "$bench_pid" 2>/dev/null || { cat "$work/bench.log" >&2; exit 1; }
    sleep 0.2
done
echo "== all logged on; restarting the server on port $port at the default password cost (14)"
restart_start=$(date +%s.%N)
kill -TERM "$server_pid"
wait "$server_pid" || true
start_server 2 "$port" 14
restart_end=$(date +%s.%N)
echo "   the server was down for $(echo "$restart_end - $restart_start" | bc) s (stop + start)"
wait "$bench_pid" && status=0 || status=$?
bench_pid=""
cat "$work/bench.json"
echo
resumed=$(grep -c '"credential": "resumption token"\|credential=resumption token' "$work/server-2.log" || true)
password=$(grep -c '"credential": "password"\|credential=password' "$work/server-2.log" || true)
echo "logons after the restart: $resumed by resumption token, $password by password"
exit "$status"
