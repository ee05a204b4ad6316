#!/usr/bin/env bash
# The kill campaign: `parley server` (TLS, the clients pin its fingerprint) under continuous load
# from several senders, with recipients online all the time, on and off at random, and offline
# until the end, is killed with SIGKILL at random moments and started again on the same data
# directory and port, KILLS times. Then the senders stop, every recipient logs on and takes what
# is left, and scripts/kill-campaign-check.py counts acknowledged-but-lost, duplicated and
# reordered messages (all must be 0: exit 1 otherwise) and the messages that came again on the
# wire after their recipient had acknowledged them (ParleyClient hides those).
#
#   ./scripts/kill-campaign.sh                  # 100 kills, debug build (about 6 minutes)
#   KILLS=5 ./scripts/kill-campaign.sh          # the short run of scripts/test.sh
#   BUILD=release KILLS=200 ./scripts/kill-campaign.sh
#
# Settings: KILLS (100), BUILD (debug|release), SENDERS (4), ONLINE (2), INTERMITTENT (2),
# LATE (1), UP_MIN_MS/UP_MAX_MS (how long the server runs before each kill: 100..2500 ms),
# NO_BUILD=1 (use the binary as built), KEEP=1 (keep the work directory with every log).
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-100}
BUILD=${BUILD:-debug}
SENDERS=${SENDERS:-4}
ONLINE=${ONLINE:-2}
INTERMITTENT=${INTERMITTENT:-2}
LATE=${LATE:-1}
UP_MIN_MS=${UP_MIN_MS:-100}
UP_MAX_MS=${UP_MAX_MS:-2500}

if [ "${NO_BUILD:-0}" != 1 ]; then
    source scripts/release-build.sh
    parley_build "$BUILD" --product parley >/dev/null
fi
parley="$PWD/.build/$BUILD/parley"
work=$(mktemp -d /tmp/parley-kill.XXXXXX)
mkdir "$work/logs"
server_pid=
client_pid=
cleanup() {
    [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    wait 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# start_server PORT: starts the server on PORT (0: any), sets server_pid, port and fingerprint.
starts=0
start_server() {
    starts=$((starts + 1))
    local out="$work/server-$starts.out" attempt
    for attempt in 1 2 3 4 5; do
        "$parley" server --host 127.0.0.1 --port "$1" --data "$work/data" --password-cost 4 \
            --log-level error >"$out" 2>>"$work/server.log" 3>&- &
        server_pid=$!
        for _ in $(seq 1 600); do
            grep -q "^listening on" "$out" 2>/dev/null && break
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.05
        done
        if grep -q "^listening on" "$out"; then
            port=$(sed -n 's/^listening on .*://p' "$out")
            fingerprint=$(sed -n 's/^tls fingerprint //p' "$out")
            return 0
        fi
        # Not up: the port may still be held for a moment after the kill; try again.
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        echo "server start $starts attempt $attempt failed:" >&2
        tail -3 "$work/server.log" >&2
    done
    echo "the server did not start" >&2
    exit 1
}

start_server 0
echo "== kill campaign: $KILLS kills, $SENDERS senders, $ONLINE online + $INTERMITTENT intermittent + $LATE late recipients ($BUILD build, TLS, port $port)"

mkfifo "$work/control"
"$parley" campaign-client --server "127.0.0.1:$port" --server-fingerprint "$fingerprint" \
    --senders "$SENDERS" --online "$ONLINE" --intermittent "$INTERMITTENT" --late "$LATE" \
    --logs "$work/logs" <"$work/control" >"$work/client.out" 2>"$work/client.err" &
client_pid=$!
# The client's standard input: closing it tells the client to stop sending and drain (so no
# other process may inherit it: the servers are started with it closed).
exec 3>"$work/control"
for _ in $(seq 1 1200); do
    grep -q "^ready" "$work/client.out" 2>/dev/null && break
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.05
done
grep -q "^ready" "$work/client.out" || { cat "$work/client.err" >&2; echo "the campaign client did not start" >&2; exit 1; }

started=$(date +%s)
for kill in $(seq 1 "$KILLS"); do
    up=$((UP_MIN_MS + RANDOM % (UP_MAX_MS - UP_MIN_MS + 1)))
    sleep "$(printf '%d.%03d' $((up / 1000)) $((up % 1000)))"
    kill -0 "$client_pid" 2>/dev/null || { cat "$work/client.err" >&2; echo "the campaign client died" >&2; exit 1; }
    kill -9 "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    start_server "$port"
    if [ $((kill % 10)) = 0 ]; then
        echo "   $kill kills, $(cat "$work"/logs/acknowledged-*.log | wc -l) messages acknowledged so far"
    fi
done
loaded=$(($(date +%s) - started))

exec 3>&-
wait "$client_pid" || { cat "$work/client.err" >&2; echo "the campaign client failed" >&2; client_pid=; exit 1; }
client_pid=
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=
acknowledged=$(cat "$work"/logs/acknowledged-*.log | wc -l)
echo "   $loaded s under load and kills: $((acknowledged / (loaded > 0 ? loaded : 1))) acknowledged messages/s"
python3 scripts/kill-campaign-check.py "$work/logs" "$work/client.out" "$KILLS"
