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
source scripts/release-build.sh
SEARCH_MESSAGES=${SEARCH_MESSAGES:-1000000}

if [ -z "${SKIP_THROUGHPUT:-}" ]; then
    # What the history recorded (and whether it had to drop anything: the server logs drops).
    PASSWORD_COST=${PASSWORD_COST:-14} LOG_MATCH=history AIM="aim: no worse than -20 %" \
        ./scripts/bench-ab.sh history --history-days 30
fi

if [ -n "${PARLEY:-}" ]; then
    parley=$(realpath "$PARLEY")
else
    parley_release_build --product parley >/dev/null
    parley="$PWD/.build/release/parley"
fi
work=$(mktemp -d /tmp/parley-bench-history.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ -z "${SKIP_SEARCH:-}" ]; then
    echo "== history search: $SEARCH_MESSAGES messages archived"
    "$parley" bench-history --messages "$SEARCH_MESSAGES" --data "$work/search"
fi
