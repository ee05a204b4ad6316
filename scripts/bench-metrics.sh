#!/usr/bin/env bash
# Measures what the Prometheus metrics backend costs the message path (issue: "throughput must not
# drop by more than 3 %"): the same `parley bench` throughput run against a server without
# metrics (swift-metrics' no-op backend) and one with `--metrics-address` (swift-prometheus),
# RUNS interleaved pairs on the same machine, release build, plaintext (TLS costs the same in both).
#
#   ./scripts/bench-metrics.sh                 # 4 pairs of 300,000 messages among 100 clients
#   RUNS=5 MESSAGES=500000 ./scripts/bench-metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-4}
CLIENTS=${CLIENTS:-100}
MESSAGES=${MESSAGES:-300000}

swift build -c release --product parley >/dev/null
parley="$PWD/.build/release/parley"
work=$(mktemp -d /tmp/parley-bench-metrics.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

run() { # run NAME [server args...]: one throughput run, its JSON report appended to $work/NAME.jsonl
    local name=$1; shift
    rm -rf "$work/data"
    "$parley" server --host 127.0.0.1 --port 0 --data "$work/data" --log-level error --insecure-plaintext "$@" \
        >"$work/server.out" 2>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    local address
    address=$(sed -n 's/^listening on //p' "$work/server.out")
    [ -n "$address" ] || { cat "$work/server.log"; exit 1; }
    "$parley" bench --server "$address" --insecure-plaintext --server-pid "$server_pid" \
        --clients "$CLIENTS" --messages "$MESSAGES" --size 64 --json >>"$work/$name.jsonl"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}

for i in $(seq 1 "$RUNS"); do
    echo "== pair $i of $RUNS"
    # ABBA order: the machine drifts over a session (page cache, other work), and a fixed order
    # would charge the drift to one side.
    if [ $((i % 2)) = 1 ]; then
        run off; run on --metrics-address 127.0.0.1:0
    else
        run on --metrics-address 127.0.0.1:0; run off
    fi
done

python3 - "$work/off.jsonl" "$work/on.jsonl" <<'PY'
import json, statistics, sys
def load(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    return [r["deliveredPerSecond"] for r in rows], [r.get("serverMicrosecondsPerMessage") for r in rows]
off_rate, off_cpu = load(sys.argv[1])
on_rate, on_cpu = load(sys.argv[2])
for name, rate, cpu in (("metrics off", off_rate, off_cpu), ("metrics on ", on_rate, on_cpu)):
    print(f"{name}: delivered/s {', '.join(f'{r:,.0f}' for r in rate)} (median {statistics.median(rate):,.0f}); "
          f"server µs/message {', '.join(f'{c:.2f}' for c in cpu)} (median {statistics.median(cpu):.2f})")
drop = 1 - statistics.median(on_rate) / statistics.median(off_rate)
cpu = statistics.median(on_cpu) / statistics.median(off_cpu) - 1
print(f"throughput change with metrics on: {-drop * 100:+.1f} %; server CPU per message: {cpu * 100:+.1f} %")
PY
