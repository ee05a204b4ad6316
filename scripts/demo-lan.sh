#!/usr/bin/env bash
# The Parley LAN demo, in the project's LAN lab (scripts/lan-lab.sh): four hosts on one virtual
# Ethernet, each with its own avahi-daemon. h1 runs the server; h2, h3 and h4 run the nodes of
# Alice, Bob and Carol (`parley node`). It shows:
#   1. a message for a user who is not running yet goes through the server, which stores it;
#   2. once the nodes have found each other on the LAN, messages go directly, node to node;
#   3. the server stops, and the nodes keep talking peer to peer;
#   4. Carol's node stops; Alice's messages to her wait in Alice's outbox ("queued") and arrive
#      as soon as Carol's node is back.
# Run as root (network namespaces). Installs what it needs with apt-get, builds `parley`, and
# tears the lab down on exit. Every wait is on an event in the nodes' JSON logs, with a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo-lan.sh: run as root (the LAN lab uses network namespaces)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

lab="$PWD/scripts/lan-lab.sh"
source scripts/deps.sh
parley_install_debian_packages


say "building the parley command (the first build takes a few minutes)"
swift build --product parley 2>&1 | grep -E "error|warning: .*Sources|complete" || true
parley="$PWD/.build/debug/parley"
[ -x "$parley" ] || { echo "build failed"; exit 1; }

data=$(mktemp -d /tmp/parley-lan-demo.XXXXXX)
server_address=10.231.0.1:7420
cleanup() {
    status=$?
    if [ "$status" -ne 0 ]; then
        echo "the demo failed (exit $status); the end of each log:"
        for log in "$data"/*.log "$data"/*.err; do
            [ -s "$log" ] && { echo "--- $log"; tail -n 15 "$log"; }
        done
    fi
    "$lab" down >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap cleanup EXIT

# wait_for FILE ERE SECONDS [FROM_LINE]: prints the first line after FROM_LINE matching ERE,
# polling until the deadline; fails when it does not come.
wait_for() {
    local file=$1 pattern=$2 seconds=$3 from=${4:-0} line
    local deadline=$(( $(date +%s%N) + seconds * 1000000000 ))
    while :; do
        line=$(tail -n +"$((from + 1))" "$file" 2>/dev/null | grep -E -m1 -- "$pattern" || true)
        [ -n "$line" ] && { printf '%s\n' "$line"; return 0; }
        (( $(date +%s%N) < deadline )) || { echo "timed out after ${seconds}s waiting for /$pattern/ in $file" >&2; return 1; }
        sleep 0.1
    done
}
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# field JSON_LINE KEY: a string or scalar value of a flat JSON line (keys are unique per line).
field() {
    local value
    value=$(sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" <<<"$1")
    [ -n "$value" ] || value=$(sed -n "s/.*\"$2\":\([^,}\"]*\).*/\1/p" <<<"$1")
    printf '%s' "$value"
}

# start_in HOST PIDFILE OUT ERR CMD...: runs CMD in the lab host in the background, its pid in PIDFILE.
start_in() {
    local host=$1 pidfile=$2 out=$3 err=$4; shift 4
    "$lab" exec "$host" sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$out" 2>"$err" &
}

say "a LAN of four hosts: h1 = 10.231.0.1 (server), h2 Alice, h3 Bob, h4 Carol"
"$lab" up 4 >/dev/null
"$lab" status

say "the server starts on h1"
start_in h1 "$data/server.pid" "$data/server.out" "$data/server.log" \
    "$parley" server --host 10.231.0.1 --port 7420 --data "$data/server" --json
listening=$(wait_for "$data/server.out" '"event":"listening"' 60)
# TLS is on: every client below (register, the nodes) pins the certificate the server made.
export PARLEY_SERVER_FINGERPRINT
PARLEY_SERVER_FINGERPRINT=$(field "$listening" tlsFingerprint)
note "listening on $server_address (TLS; certificate $PARLEY_SERVER_FINGERPRINT, pinned by every client)"

say "Alice, Bob and Carol register (from h2)"
declare -A uid host fd
for person in alice bob carol; do
    uid[$person]=$("$lab" exec h2 "$parley" register --server "$server_address" --name "$person" \
        --first-name "${person^}" --organization Lab --password "$person-pw")
    note "$person is user ${uid[$person]}"
done
host=([alice]=h2 [bob]=h3 [carol]=h4)
name_of() {
    local person
    for person in alice bob carol; do [ "${uid[$person]}" = "$1" ] && { printf '%s' "${person^}"; return; }; done
    printf 'user %s' "$1"
}

# start_node PERSON: `parley node` in the person's host, commands from a FIFO, JSON to PERSON.log.
start_node() {
    local person=$1 fifo="$data/$1.in" mark
    if [ -z "${fd[$person]:-}" ]; then
        mkfifo "$fifo"
        exec {descriptor}<>"$fifo"   # held open by the script: the node never sees the end of input
        fd[$person]=$descriptor
    fi
    mark=$(lines "$data/$person.log")
    "$lab" exec "${host[$person]}" "$parley" node --data "$data/$person" --name "${person^}" \
        --server "$server_address" --user "${uid[$person]}" --password "$person-pw" --json \
        <"$fifo" >>"$data/$person.log" 2>>"$data/$person.err" &
    local started
    started=$(wait_for "$data/$person.log" '"event":"started"' 30 "$mark")
    note "${person^}'s node is up on ${host[$person]}: node $(field "$started" nodeID | cut -c1-16)..., port $(field "$started" port)"
}
command_to() { printf '%s\n' "$2" >&"${fd[$1]}"; }

# send FROM TO TEXT: FROM's node sends TEXT to TO's user; prints the route it took.
send() {
    local from=$1 to=$2 text=$3 mark answer
    mark=$(lines "$data/$from.log")
    command_to "$from" "send ${uid[$to]} $text"
    answer=$(wait_for "$data/$from.log" '"event":"(sent|error)"' 30 "$mark")
    if [ "$(field "$answer" event)" = error ]; then
        note "${from^} -> ${to^}: \"$text\"  FAILED: $(field "$answer" message)"
        return 1
    fi
    printf '   %-6s -> %-6s "%s"   sent: %s\n' "${from^}" "${to^}" "$text" "$(field "$answer" route)"
}

# receive PERSON TEXT: waits for TEXT to arrive at PERSON's node and prints the line and route.
receive() {
    local person=$1 text=$2 line
    line=$(wait_for "$data/$person.log" "\"event\":\"message\".*\"text\":\"$text\"" 30)
    printf '   %-6s <- %-6s "%s"   received via %s\n' "${person^}" "$(name_of "$(field "$line" sender)")" \
        "$(field "$line" text)" "$(field "$line" route)"
}

# linked PERSON OTHER: waits until PERSON's node has a direct link to OTHER's node.
linked() {
    wait_for "$data/$1.log" "\"event\":\"peer(Up|Changed)\".*\"linked\":true.*\"userID\":${uid[$2]}[,}]" 30 >/dev/null
    note "${1^}'s node is linked to ${2^}'s"
}

say "Alice's and Carol's nodes start and log on to the server; Bob's is not running yet"
start_node alice
start_node carol
wait_for "$data/alice.log" '"state":"loggedOn"' 30 >/dev/null
wait_for "$data/carol.log" '"state":"loggedOn"' 30 >/dev/null
note "both logged on"

say "Alice writes to Bob, who is offline: the server stores the message"
send alice bob "Hi Bob, are you in today"

say "Bob's node starts: the stored message comes from the server"
start_node bob
receive bob "Hi Bob, are you in today"

say "the nodes find each other on the LAN (Avahi) and link directly"
linked alice bob
linked alice carol
linked bob carol
"$lab" exec h2 "$parley" peers --timeout 2 | sed 's/^/   /'

say "now messages go directly, node to node"
send bob alice "Yes, in the lab until six"
receive alice "Yes, in the lab until six"
send alice carol "Carol, the demo starts at three"
receive carol "Carol, the demo starts at three"
send carol bob "Bob, can you bring the cables"
receive bob "Bob, can you bring the cables"

say "the server stops (SIGTERM); the nodes notice and keep talking peer to peer"
kill -TERM "$(cat "$data/server.pid")"
for person in alice bob carol; do
    wait_for "$data/$person.log" '"state":"disconnected"' 30 >/dev/null
done
note "all three nodes: server disconnected"
send alice bob "The server is down, but we still talk"
receive bob "The server is down, but we still talk"
send bob alice "Peer to peer, nice"
receive alice "Peer to peer, nice"

say "Carol's node stops; Alice writes to her twice: the messages wait in Alice's outbox"
mark=$(lines "$data/alice.log")
command_to carol quit
wait_for "$data/carol.log" '"event":"stopped"' 30 >/dev/null
note "Carol's node stopped"
wait_for "$data/alice.log" '"event":"peerDown"' 30 "$mark" >/dev/null
note "Alice's node: Carol's node is down"
send alice carol "Carol, the room changed to B2"
send alice carol "And bring your laptop"

say "Carol's node restarts (the server is still down): the queued messages arrive, in order"
start_node carol
receive carol "Carol, the room changed to B2"
receive carol "And bring your laptop"

say "done: stopping the nodes and taking the lab down"
for person in alice bob carol; do command_to "$person" quit; done
for person in alice bob carol; do wait_for "$data/$person.log" '"event":"stopped"' 30 >/dev/null || true; done
