#!/usr/bin/env bash
# What one server option costs the message path: the same `parley bench` throughput run against a
# server without the option ("off") and one with it ("on"), RUNS interleaved pairs in ABBA order,
# release build, plaintext (TLS costs the same on both sides). Used by bench-metrics.sh and
# bench-history.sh.
#
#   ./scripts/bench-ab.sh LABEL [server args of the "on" side...]
#   RUNS=5 MESSAGES=500000 ./scripts/bench-ab.sh metrics --metrics-address 127.0.0.1:0
#
# The generator is `parley bench --lean` (a tenth of a core: it leaves the machine to the server);
# LEAN=0 uses the ParleyClient-based `parley bench`, which takes a core itself.
# PARLEY=path uses that binary instead of building; PASSWORD_COST sets the servers' password cost;
# LOG_MATCH=text prints the "on" server's log lines holding it after each of its runs; AIM=text is
# printed after the result.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/release-build.sh
label=$1; shift
RUNS=${RUNS:-4}
CLIENTS=${CLIENTS:-100}
MESSAGES=${MESSAGES:-300000}
LEAN=${LEAN:-1}

if [ -n "${PARLEY:-}" ]; then
    parley=$(realpath "$PARLEY")
else
    parley_release_build --product parley >/dev/null
    parley="$PWD/.build/release/parley"
fi
work=$(mktemp -d /tmp/parley-bench-ab.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

run() { # run NAME [server args...]: one throughput run, its JSON report appended to $work/NAME.jsonl
    local name=$1; shift
    rm -rf "$work/data"
    "$parley" server --host 127.0.0.1 --port 0 --data "$work/data" --log-level error --insecure-plaintext \
        ${PASSWORD_COST:+--password-cost "$PASSWORD_COST"} "$@" >"$work/server.out" 2>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    local address
    address=$(sed -n 's/^listening on //p' "$work/server.out")
    [ -n "$address" ] || { cat "$work/server.log"; exit 1; }
    "$parley" bench $([ "$LEAN" = 1 ] && echo --lean) --server "$address" --insecure-plaintext --server-pid "$server_pid" \
        --clients "$CLIENTS" --messages "$MESSAGES" --size 64 --json >>"$work/$name.jsonl"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    if [ "$name" = on ] && [ -n "${LOG_MATCH:-}" ]; then grep -h "$LOG_MATCH" "$work/server.log" || true; fi
}

for i in $(seq 1 "$RUNS"); do
    echo "== pair $i of $RUNS"
    # ABBA order: the machine drifts over a session (page cache, other work), and a fixed order
    # would charge the drift to one side.
    if [ $((i % 2)) = 1 ]; then
        run off; run on "$@"
    else
        run on "$@"; run off
    fi
done

python3 - "$work/off.jsonl" "$work/on.jsonl" "$label" "${AIM:-}" <<'PY'
import json, statistics, sys
def load(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    return [r["deliveredPerSecond"] for r in rows], [r.get("serverMicrosecondsPerMessage") for r in rows]
off_rate, off_cpu = load(sys.argv[1])
on_rate, on_cpu = load(sys.argv[2])
label, aim = sys.argv[3], sys.argv[4]
width = len(label) + 4
for name, rate, cpu in ((f"{label} off", off_rate, off_cpu), (f"{label} on", on_rate, on_cpu)):
    print(f"{name:<{width}}: delivered/s {', '.join(f'{r:,.0f}' for r in rate)} (median {statistics.median(rate):,.0f}); "
          f"server µs/message {', '.join(f'{c:.2f}' for c in cpu)} (median {statistics.median(cpu):.2f})")
change = statistics.median(on_rate) / statistics.median(off_rate) - 1
cpu = statistics.median(on_cpu) / statistics.median(off_cpu) - 1
print(f"throughput change with {label} on: {change * 100:+.1f} %{f' ({aim})' if aim else ''}; "
      f"server CPU per message: {cpu * 100:+.1f} %")
PY
