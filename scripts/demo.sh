#!/usr/bin/env bash
# The Parley demo. Part one: a server and two clients on loopback. Alice and Bob register,
# message each other while both are online, then Bob goes offline, Alice writes to him, and Bob
# gets the stored messages (oldest first) the moment he logs on again. Part two (as root):
# scripts/demo-lan.sh, a server and three nodes on a simulated LAN.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s#$PWD/##g" >&2; "$@"; }

# Debian packages: the one list in scripts/deps.sh (shared with the test suite).
source scripts/deps.sh
parley_install_debian_packages

say "building the parley command (first build takes a few minutes)"
swift build --product parley 2>&1 | grep -E "error|warning: .*Sources|Compiling Parley|Build complete" || true
parley="$PWD/.build/debug/parley"
[ -x "$parley" ] || { echo "build failed"; exit 1; }

data=$(mktemp -d /tmp/parley-demo.XXXXXX)
server_out="$data/server.out"
cleanup() {
    [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    [ -n "${bob_pid:-}" ] && kill "$bob_pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

say "starting a server on a free loopback port (data in $data)"
"$parley" server --host 127.0.0.1 --port 0 --data "$data/server" --log-level notice >"$server_out" 2>"$data/server.log" &
server_pid=$!
for _ in $(seq 1 300); do
    grep -q "listening on" "$server_out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$data/server.log"; exit 1; }
    sleep 0.1
done
address=$(sed -n 's/^listening on //p' "$server_out")
[ -n "$address" ] || { echo "the server did not start"; cat "$data/server.log"; exit 1; }
echo "server: listening on $address"
# Client connections use TLS. The server made a self-signed certificate at its first start and
# printed its fingerprint; every client below pins it (PARLEY_SERVER_FINGERPRINT, or
# --server-fingerprint). Without a pin, clients trust a server on first use and refuse it loudly
# if its certificate ever changes.
export PARLEY_SERVER_FINGERPRINT
PARLEY_SERVER_FINGERPRINT=$(sed -n 's/^tls fingerprint //p' "$server_out")
echo "server: TLS certificate $PARLEY_SERVER_FINGERPRINT"

say "Alice and Bob register (the server assigns their user IDs)"
alice=$(run "$parley" register --server "$address" --name alice --first-name Alice --last-name Adams --organization Lab --password alice-pw)
echo "alice is user $alice"
bob=$(run "$parley" register --server "$address" --name bob --first-name Bob --last-name Brown --organization Lab --password bob-pw)
echo "bob is user $bob"

say "directory: who is in the Lab?"
run "$parley" find --server "$address" --user "$alice" --password alice-pw --field organization --match exact --value lab

say "Bob is online and listening; Alice sends him a message"
"$parley" receive --server "$address" --user "$bob" --password bob-pw --count 1 --timeout 20 >"$data/bob.out" 2>&1 &
bob_pid=$!
# Wait until Bob's session is up before Alice sends, so the message goes straight to him.
for _ in $(seq 1 200); do
    "$parley" find --server "$address" --user "$alice" --password alice-pw --name-prefix bob --online 2>/dev/null | grep -q bob && break
    sleep 0.1
done
run "$parley" send --server "$address" --user "$alice" --password alice-pw --to "$bob" "Hi Bob, lunch at noon?"
wait "$bob_pid"; bob_pid=
echo "Bob's screen:"; sed 's/^/    /' "$data/bob.out"

say "Bob answers"
run "$parley" send --server "$address" --user "$bob" --password bob-pw --to "$alice" "Sure, see you there."
run "$parley" receive --server "$address" --user "$alice" --password alice-pw --count 1 --timeout 10

say "Bob is offline now; Alice writes twice (the server stores the messages durably)"
run "$parley" send --server "$address" --user "$alice" --password alice-pw --to "$bob" "Change of plan: 12:30."
run "$parley" send --server "$address" --user "$alice" --password alice-pw --to "$bob" "Table for two is booked."

say "Bob logs on: his stored messages arrive first, oldest first"
run "$parley" receive --server "$address" --user "$bob" --password bob-pw --count 2 --timeout 10

say "and they were acknowledged, so the server has forgotten them"
run "$parley" receive --server "$address" --user "$bob" --password bob-pw --timeout 1 || true
echo "(nothing new for Bob)"

say "stopping the server (SIGTERM: graceful shutdown)"
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=

if [ "$(id -u)" = 0 ] && [ "${PARLEY_DEMO_LAN:-1}" = 1 ]; then
    say "part two: the same on a simulated LAN, with discovery, direct links and the server gone"
    ./scripts/demo-lan.sh
else
    echo "(the LAN part needs root for its network namespaces: run ./scripts/demo-lan.sh as root)"
fi
echo "done."
