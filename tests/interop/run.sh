#!/usr/bin/env bash
# Runs the independent Python client (tests/interop/interop_test.py) against a real Parley
# server on a free port with a fresh data directory, then stops the server.
#
# Usage: tests/interop/run.sh     (from anywhere; builds `parley` only if it is missing)
# Exit status: the Python test's (0 = every check passed).
# INTEROP_WAIT_FOR_SERVER_PING=1 adds a check that waits (30 s by default) for a server PING.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

parley="$root/.build/debug/parley"
if [[ ! -x "$parley" ]]; then
    echo "building parley..." >&2
    swift build --product parley >&2
fi

data="$(mktemp -d)"
scratch="$(mktemp -d)"
server_pid=""
drain_pid=""

cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        # Graceful shutdown takes a moment: wait for the process, but at most 10 s.
        timeout 10 tail --pid="$server_pid" -f /dev/null 2>/dev/null || true
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    [[ -n "$server_pid" ]] && wait "$server_pid" 2>/dev/null || true
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

status=0
[[ -n "$fingerprint" ]] || { echo "the server printed no TLS fingerprint" >&2; exit 1; }
python3 "$here/interop_test.py" "$host" "$port" "$fingerprint" || status=$?
exit "$status"
