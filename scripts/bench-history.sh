#!/usr/bin/env bash
# Measures message history (README "History"): what keeping history costs the message path (issue
# 11: throughput with history on must stay within 20 % of history off), and how fast a full-text
# search is on a large archive.
#
# 1. `parley bench` throughput against a server without history and one with --history-days 30,
#    RUNS interleaved pairs in ABBA order, release build, plaintext (TLS costs the same in both).
# 2. `parley bench-history`: fills a history database with SEARCH_MESSAGES messages of realistic
#    text, then the p50/p99 of contains-word searches and the database size per million messages.
#
#   ./scripts/bench-history.sh                      # 4 pairs of 300,000 messages; 1,000,000 archived
#   RUNS=2 MESSAGES=200000 SEARCH_MESSAGES=100000 ./scripts/bench-history.sh
#   SKIP_THROUGHPUT=1 ./scripts/bench-history.sh    # the search measurement only
#   SKIP_SEARCH=1 PARLEY=.build/debug/parley ./scripts/bench-history.sh   # throughput only, this binary
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-4}
CLIENTS=${CLIENTS:-100}
MESSAGES=${MESSAGES:-300000}
SEARCH_MESSAGES=${SEARCH_MESSAGES:-1000000}

if [ -n "${PARLEY:-}" ]; then
    parley=$(realpath "$PARLEY")
else
    swift build -c release --product parley >/dev/null
    parley="$PWD/.build/release/parley"
fi
work=$(mktemp -d /tmp/parley-bench-history.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

run() { # run NAME [server args...]: one throughput run, its JSON report appended to $work/NAME.jsonl
    local name=$1; shift
    rm -rf "$work/data"
    "$parley" server --host 127.0.0.1 --port 0 --data "$work/data" --log-level error --insecure-plaintext \
        --password-cost "${PASSWORD_COST:-14}" "$@" \
        >"$work/server.out" 2>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    local address
    address=$(sed -n 's/^listening on //p' "$work/server.out")
    [ -n "$address" ] || { cat "$work/server.log"; exit 1; }
    "$parley" bench --server "$address" --insecure-plaintext --server-pid "$server_pid" \
        --clients "$CLIENTS" --messages "$MESSAGES" --size 64 --json >>"$work/$name.jsonl"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    if [ "$name" = on ]; then
        # What the history recorded (and whether it had to drop anything: the server logs drops).
        grep -h "history" "$work/server.log" || true
    fi
}

if [ -z "${SKIP_THROUGHPUT:-}" ]; then
    for i in $(seq 1 "$RUNS"); do
        echo "== pair $i of $RUNS"
        # ABBA order: the machine drifts over a session, and a fixed order would charge the drift
        # to one side.
        if [ $((i % 2)) = 1 ]; then
            run off; run on --history-days 30
        else
            run on --history-days 30; run off
        fi
    done

    python3 - "$work/off.jsonl" "$work/on.jsonl" <<'PY'
import json, statistics, sys
def load(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    return [r["deliveredPerSecond"] for r in rows], [r.get("serverMicrosecondsPerMessage") for r in rows]
off_rate, off_cpu = load(sys.argv[1])
on_rate, on_cpu = load(sys.argv[2])
for name, rate, cpu in (("history off", off_rate, off_cpu), ("history on ", on_rate, on_cpu)):
    print(f"{name}: delivered/s {', '.join(f'{r:,.0f}' for r in rate)} (median {statistics.median(rate):,.0f}); "
          f"server µs/message {', '.join(f'{c:.2f}' for c in cpu)} (median {statistics.median(cpu):.2f})")
change = statistics.median(on_rate) / statistics.median(off_rate) - 1
cpu = statistics.median(on_cpu) / statistics.median(off_cpu) - 1
print(f"throughput change with history on: {change * 100:+.1f} % (aim: no worse than -20 %); "
      f"server CPU per message: {cpu * 100:+.1f} %")
PY
fi

if [ -z "${SKIP_SEARCH:-}" ]; then
    echo "== history search: $SEARCH_MESSAGES messages archived"
    "$parley" bench-history --messages "$SEARCH_MESSAGES" --data "$work/search"
fi
