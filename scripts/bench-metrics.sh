#!/usr/bin/env bash
# Measures what the Prometheus metrics backend costs the message path (issue: "throughput must not
# drop by more than 3 %"): the same `parley bench` throughput run against a server without
# metrics (swift-metrics' no-op backend) and one with `--metrics-address` (swift-prometheus),
# RUNS interleaved pairs on the same machine, release build, plaintext (scripts/bench-ab.sh).
#
#   ./scripts/bench-metrics.sh                 # 4 pairs of 300,000 messages among 100 clients
#   RUNS=5 MESSAGES=500000 ./scripts/bench-metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
AIM="aim: no worse than -3 %" exec ./scripts/bench-ab.sh metrics --metrics-address 127.0.0.1:0
