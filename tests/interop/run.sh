#!/usr/bin/env bash
# Runs the independent Python client (tests/interop/interop_test.py) against a real Parley
# server on a free port with a fresh data directory, and its node peer (parley_node_peer.py)
# against two real nodes: `parley node` in peer-to-peer mode (no server) and `parley receive
# --data --files` (a node logged on to that server, saving files); then stops them all.
#
# Usage: tests/interop/run.sh     (from anywhere; builds `parley` only if it is missing)
#        PARLEY=/path/to/parley tests/interop/run.sh     (another build of `parley`)
# Exit status: the Python test's (0 = every check passed).
# INTEROP_WAIT_FOR_SERVER_PING=1 adds a check that waits (30 s by default) for a server PING.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

parley="${PARLEY:-$root/.build/debug/parley}"
if [[ ! -x "$parley" ]]; then
    echo "building parley..." >&2
    swift build --product parley >&2
fi

data="$(mktemp -d)"
scratch="$(mktemp -d)"
server_pid=""
drain_pid=""
p2p_pid=""
receiver_pids=()

# Stops one process gracefully (SIGTERM, at most 10 s), then for good.
stop_process() {
    local pid="$1"
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${receiver_pids[@]}"; do stop_process "$pid"; done
    stop_process "$p2p_pid"
    stop_process "$server_pid"
    [[ -n "$drain_pid" ]] && wait "$drain_pid" 2>/dev/null || true
    rm -rf "$data" "$scratch"
}
trap cleanup EXIT

# The server's standard output goes through a FIFO so we can wait for its first line without
# polling; its standard error (logs) goes to ours, prefixed.
mkfifo "$scratch/stdout"
"$parley" server --host 127.0.0.1 --port 0 --data "$data" --history-days 30 >"$scratch/stdout" 2> >(sed 's/^/server: /' >&2) &
server_pid=$!
exec 3<"$scratch/stdout"

# Wait at most 30 s for "listening on HOST:PORT"; the line before it gives the TLS fingerprint.
address=""
fingerprint=""
deadline=$((SECONDS + 30))
while (( SECONDS < deadline )); do
    if ! IFS= read -r -t $((deadline - SECONDS)) line <&3; then
        break # end of output (the server exited) or timeout
    fi
    case "$line" in
        "tls fingerprint "*) fingerprint="${line#tls fingerprint }" ;;
        "listening on "*) address="${line#listening on }"; break ;;
        *) echo "server: $line" >&2 ;;
    esac
done
if [[ -z "$address" ]]; then
    echo "the server did not print 'listening on HOST:PORT' within 30 s" >&2
    exit 1
fi
# Keep draining the server's standard output so it can never block on it.
cat <&3 | sed 's/^/server: /' >&2 &
drain_pid=$!
exec 3<&-

host="${address%:*}"
port="${address##*:}"
host="${host#[}"
host="${host%]}"
echo "server listening on $host:$port (data in $data)" >&2

[[ -n "$fingerprint" ]] || { echo "the server printed no TLS fingerprint" >&2; exit 1; }

# Reads lines from file descriptor $1 until one contains $2 (at most 30 s); prints that line.
# Other lines go to standard error, prefixed with $3.
wait_for_line() {
    local fd="$1" pattern="$2" prefix="$3" line deadline=$((SECONDS + 30))
    while (( SECONDS < deadline )); do
        IFS= read -r -t $((deadline - SECONDS)) line <&"$fd" || break
        if [[ "$line" == *"$pattern"* ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        echo "$prefix: $line" >&2
    done
    echo "$prefix printed no line with $pattern within 30 s" >&2
    return 1
}

# Node links (PROTOCOL.md sections 22 and 26.9). Each node's standard output is a FIFO that
# stays open on a file descriptor the Python test inherits and reads (it waits for the lines
# the node prints); logs go to our standard error, prefixed.
#
# 1. A node in peer-to-peer mode: no server, no user; it prints "started" with its node ID and port.
mkdir -p "$scratch/p2p"
mkfifo "$scratch/p2p.out"
"$parley" node --data "$scratch/p2p" --name interop-p2p --listen-host 127.0.0.1 --listen-port 0 \
    --json --no-stdin-commands >"$scratch/p2p.out" 2> >(sed 's/^/p2p node: /' >&2) &
p2p_pid=$!
exec 4<"$scratch/p2p.out"
p2p_started="$(wait_for_line 4 '"event":"started"' "p2p node")"

# 2. Three nodes logged on to the server, each as a new user, saving the files sent to it in its
#    inbox; each declares its node key and direct addresses to the server, where the Python peer
#    looks them up. Two accept every file: `parley receive` ends at a file that fails (a cancel, a
#    wrong hash), and the checks need one of each; the third declines every file.
receiver_password="receiver secret"
receivers=""
for i in 1 2 3; do
    accept=all
    (( i == 3 )) && accept=none
    fd=$((4 + i))
    user="$("$parley" register --server "$host:$port" --server-fingerprint "$fingerprint" \
        --name "interop-receiver$i-$$" --password "$receiver_password")"
    mkdir -p "$scratch/receiver$i" "$scratch/inbox$i"
    mkfifo "$scratch/receiver$i.out"
    "$parley" receive --data "$scratch/receiver$i" --files "$scratch/inbox$i" --server "$host:$port" \
        --server-fingerprint "$fingerprint" --user "$user" --password "$receiver_password" \
        --accept-files "$accept" --json >"$scratch/receiver$i.out" 2> >(sed "s/^/receiving node $i: /" >&2) &
    receiver_pids+=("$!")
    eval "exec $fd<\"\$scratch/receiver$i.out\""
    wait_for_line "$fd" '"event":"loggedOn"' "receiving node $i" >/dev/null
    receivers+="${receivers:+ }$fd:$user:$scratch/inbox$i"
done

status=0
INTEROP_P2P_FD=4 INTEROP_P2P_STARTED="$p2p_started" INTEROP_RECEIVERS="$receivers" INTEROP_SCRATCH="$scratch" \
    python3 "$here/interop_test.py" "$host" "$port" "$fingerprint" || status=$?
exit "$status"
