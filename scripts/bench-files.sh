#!/usr/bin/env bash
# File transfer benchmark (docs/PROTOCOL.md sections 26 and 26.9): sends one file of SIZE_MB
# (default 1024) through a real `parley server` on loopback with `parley send-file`, fetched by
# `parley receive --files`, then directly between two nodes (`parley send-file --data` to
# `parley receive --data --files`, the server only for their logons), and prints:
#   - the upload rate (sender -> server, until the server has verified the file),
#   - the end-to-end rate (until the recipient has it, hash checked),
#   - the direct rate (until the receiving node has it, hash checked),
#   - the peak resident memory (VmHWM / "Maximum resident set size") of the server, the sender
#     and the receiver, and of the two nodes,
#   - next to a plain TCP copy of the same file over loopback (python3 sockets, sendfile(2) to
#     a reader that writes to disk): the physical limit of this machine for one stream.
#
# Usage: scripts/bench-files.sh            (PARLEY=path/to/parley to pick a build; default: the
#        release build if present, else the debug build). Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb="${SIZE_MB:-1024}"
parley="${PARLEY:-}"
if [[ -z "$parley" ]]; then
    if [[ -x .build/release/parley ]]; then parley=.build/release/parley; else parley=.build/debug/parley; fi
fi
[[ -x "$parley" ]] || { echo "no parley binary at $parley (swift build first)" >&2; exit 1; }
parley="$(cd "$(dirname "$parley")" && pwd)/$(basename "$parley")"

work="$(mktemp -d /tmp/parley-bench-files.XXXXXX)"
server_pid=""
cleanup() {
    [[ -n "$server_pid" ]] && kill -TERM "$server_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && wait "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "build: $parley ($(basename "$(dirname "$parley")")), file: $size_mb MiB, cpus: $(nproc)"
head -c "$((size_mb * 1024 * 1024))" /dev/urandom > "$work/file.bin"
bytes=$(stat -c %s "$work/file.bin")
mkdir -p "$work/server" "$work/inbox" "$work/copy"

# --- the physical limit: one TCP stream over loopback, file to socket to file ---------------
copy_seconds=$(python3 - "$work/file.bin" "$work/copy/file.bin" <<'EOF'
import os, socket, sys, threading, time
source, target = sys.argv[1], sys.argv[2]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]
def receive():
    connection, _ = listener.accept()
    with open(target, "wb") as out:
        while True:
            block = connection.recv(1 << 20)
            if not block:
                break
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    connection.close()
reader = threading.Thread(target=receive)
reader.start()
started = time.monotonic()
with socket.create_connection(("127.0.0.1", port)) as sender, open(source, "rb") as data:
    sender.sendfile(data)
reader.join()
print(f"{time.monotonic() - started:.3f}")
EOF
)
cmp -s "$work/file.bin" "$work/copy/file.bin" || { echo "the TCP copy differs" >&2; exit 1; }
rm -f "$work/copy/file.bin"

# --- through the Parley server ----------------------------------------------------------
mkfifo "$work/server.out"
"$parley" server --host 127.0.0.1 --port 0 --data "$work/server" --password-cost 8 \
    --max-file-size "$((bytes + 1))" --transfer-quota "$((bytes * 2))" > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
exec 3< "$work/server.out"
address=""
while read -r line <&3; do
    if [[ "$line" == "listening on "* ]]; then address="${line#listening on }"; break; fi
done
[[ -n "$address" ]] || { echo "the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
cat <&3 > /dev/null &

export HOME="$work"   # trust on first use records the server in $work/.config
alice=$("$parley" register --server "$address" --name alice --password pw)
bob=$("$parley" register --server "$address" --name bob --password pw)

/usr/bin/time -v -o "$work/receiver.time" "$parley" receive --server "$address" --user "$bob" --password pw \
    --files "$work/inbox" --count 1 > "$work/receiver.out" &
receiver_pid=$!

started=$(date +%s.%N)
/usr/bin/time -v -o "$work/sender.time" "$parley" send-file --json --server "$address" --user "$alice" \
    --password pw --to "$bob" "$work/file.bin" > "$work/sender.out" &
sender_pid=$!
# The upload ends when send-file prints "uploaded".
uploaded=""
while kill -0 "$sender_pid" 2>/dev/null; do
    if grep -q '"uploaded"' "$work/sender.out" 2>/dev/null; then uploaded=$(date +%s.%N); break; fi
    sleep 0.05
done
wait "$sender_pid"
finished=$(date +%s.%N)
wait "$receiver_pid"
cmp -s "$work/file.bin" "$work/inbox/file.bin" || { echo "the received file differs" >&2; exit 1; }
server_hwm=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")

# --- directly between two nodes (the server only for logons and the nodes' addresses) -------
mkdir -p "$work/direct-inbox"
/usr/bin/time -v -o "$work/node-receiver.time" "$parley" receive --json --data "$work/bob-node" \
    --server "$address" --user "$bob" --password pw --files "$work/direct-inbox" --count 1 \
    > "$work/node-receiver.out" 2> "$work/node-receiver.log" &
node_receiver_pid=$!
until grep -q '"loggedOn"' "$work/node-receiver.out" 2>/dev/null; do
    kill -0 "$node_receiver_pid" 2>/dev/null || { echo "the receiving node stopped" >&2; cat "$work/node-receiver.log" >&2; exit 1; }
    sleep 0.05
done
direct_started=$(date +%s.%N)
/usr/bin/time -v -o "$work/node-sender.time" "$parley" send-file --json --data "$work/alice-node" \
    --server "$address" --user "$alice" --password pw --to "$bob" "$work/file.bin" > "$work/node-sender.out"
direct_finished=$(date +%s.%N)
wait "$node_receiver_pid"
grep -q '"route":"direct"' "$work/node-sender.out" || { echo "the file did not go directly" >&2; tail -3 "$work/node-sender.out" >&2; exit 1; }
cmp -s "$work/file.bin" "$work/direct-inbox/file.bin" || { echo "the directly received file differs" >&2; exit 1; }

rss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
mb=$(echo "$bytes / 1000000" | bc -l)
printf 'plain TCP copy (python3 sendfile -> recv -> disk): %.0f MB/s\n' "$(echo "$mb / $copy_seconds" | bc -l)"
[[ -n "$uploaded" ]] && printf 'upload (sender -> server, hash verified): %.0f MB/s\n' \
    "$(echo "$mb / ($uploaded - $started)" | bc -l)"
printf 'end to end (sender -> server -> recipient, hash checked): %.0f MB/s (%.1f s)\n' \
    "$(echo "$mb / ($finished - $started)" | bc -l)" "$(echo "$finished - $started" | bc -l)"
echo "peak RSS: server $((server_hwm / 1024)) MiB (VmHWM), sender $(( $(rss "$work/sender.time") / 1024 )) MiB, receiver $(( $(rss "$work/receiver.time") / 1024 )) MiB"
printf 'directly, node -> node (send-file --data -> receive --data --files, hash checked): %.0f MB/s (%.1f s)\n' \
    "$(echo "$mb / ($direct_finished - $direct_started)" | bc -l)" "$(echo "$direct_finished - $direct_started" | bc -l)"
echo "peak RSS of the nodes: sender $(( $(rss "$work/node-sender.time") / 1024 )) MiB, receiver $(( $(rss "$work/node-receiver.time") / 1024 )) MiB"
