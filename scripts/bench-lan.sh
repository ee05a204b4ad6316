#!/usr/bin/env bash
# bench-lan.sh - LAN discovery latency, measured in a lab of its own (scripts/lan-lab.sh, 2 hosts).
#
#   bench-lan.sh [N]        N samples per measurement (default 30, or BENCH_N)
#
# 1. "running peer": a probe publishes on h1 and keeps running; N times a browsing probe starts on
#    h2 and is stopped again. Sample = wall clock from just before the browser process is launched
#    to the moment its "up" line for h1's node arrives. The browser's own startup (exec, dynamic
#    linking, Swift runtime, D-Bus + avahi client) is INCLUDED; it is also printed on its own
#    ("startup" = launch -> the probe's first output line, which is where the probe's "ms" clock
#    starts; "probe" = the "ms" of the up line = discovery alone).
#    Target (issue): p95 <= 0.5 s.
# 1b. the same with a cold cache: h2's avahi-daemon is restarted before each sample (not timed),
#    so the browser's queries and h1's answers have to cross the wire.
# 2. "new peer": a browsing probe runs on h2; N times a publishing probe with a fresh node ID and
#    instance name starts on h1. Sample = wall clock from launching the publisher to the "up" line
#    for it on h2 (the publisher's startup and mDNS probing are included). After each sample the
#    publisher is stopped (SIGTERM) and the script waits for the "down" on h2 before the next one.
#
# Times come from bash's $EPOCHREALTIME (no fork per reading); every wait has a deadline.
# Prints every sample, then min / median / p95 / max (nearest rank) per measurement.
#
# Env: PARLEY_DISCOVERY_PROBE  the probe (default: .build/release/parley-discovery-probe if it exists,
#                              else .build/debug/parley-discovery-probe); this script builds nothing.
#      BENCH_N                 samples (default 30)
#      BENCH_BROWSER_ADVERTISE 1 (default): the browsing probe also advertises a node, as a real
#                              node does; 0: it only browses (--no-advertise)
#      BENCH_TIMEOUT           seconds to wait for one "up" (default 10)
#      PARLEYLAB_PREFIX (default parleybench), PARLEYLAB_SUBNET (default 10.233.0): the lab, kept
#      apart from the test labs (parleylab 10.231.0, parleynode 10.232.0). The lab is torn down on exit.
# Needs root (see lan-lab.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=$ROOT/scripts/lan-lab.sh
export PARLEYLAB_PREFIX=${PARLEYLAB_PREFIX:-parleybench}
export PARLEYLAB_SUBNET=${PARLEYLAB_SUBNET:-10.233.0}
export PARLEYLAB_IPV6=${PARLEYLAB_IPV6:-0}
export PARLEYLAB_NICS=${PARLEYLAB_NICS:-1}
N=${1:-${BENCH_N:-30}}
TIMEOUT=${BENCH_TIMEOUT:-10}
ADVERTISE=${BENCH_BROWSER_ADVERTISE:-1}

die() { echo "bench-lan: $*" >&2; exit 1; }
log() { echo "bench-lan: $*" >&2; }

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer (seconds)"
[[ $ADVERTISE == 0 || $ADVERTISE == 1 ]] || die "BENCH_BROWSER_ADVERTISE must be 0 or 1"
[[ $(id -u) == 0 ]] || die "must run as root"
(( BASH_VERSINFO[0] >= 5 )) || die "needs bash 5 (\$EPOCHREALTIME)"

if [[ -n ${PARLEY_DISCOVERY_PROBE:-} ]]; then
  PROBE=$PARLEY_DISCOVERY_PROBE
elif [[ -x $ROOT/.build/release/parley-discovery-probe ]]; then
  PROBE=$ROOT/.build/release/parley-discovery-probe
else
  PROBE=$ROOT/.build/debug/parley-discovery-probe
fi
[[ -x $PROBE ]] || die "no probe at $PROBE (swift build --product parley-discovery-probe, or set PARLEY_DISCOVERY_PROBE)"
BROWSE_FLAGS=()
[[ $ADVERTISE == 0 ]] && BROWSE_FLAGS=(--no-advertise)

WORK=$(mktemp -d /tmp/bench-lan.XXXXXX)
PIDS=()  # probes started here (killed by pid on exit)

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$LAB" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_us() { local t=${EPOCHREALTIME/./}; echo "$((10#$t))"; }   # microseconds, no fork
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# start_probe HOST OUT ARGS... : runs the probe in HOST's namespace with its output going to OUT
# (a file, or a fifo already open for reading); sets STARTED_PID. ip netns exec and env exec, so
# the pid is the probe's own.
start_probe() {
  local host=$1 out=$2; shift 2
  ip netns exec "$PARLEYLAB_PREFIX-$host" env DBUS_SYSTEM_BUS_ADDRESS="${BUS[$host]}" \
    "$PROBE" "$@" >"$out" 2>>"$WORK/$host.stderr" </dev/null &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

stop_probe() {  # pid: SIGTERM (graceful: withdraws its service), wait up to 5 s, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 100; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

# read_until FD DEADLINE_US TEST : reads lines from FD until `TEST LINE` succeeds; sets LINE and
# LINE_US (arrival time). Returns 1 at the deadline.
read_until() {
  local fd=$1 deadline=$2 test=$3 left
  while true; do
    left=$(( deadline - $(now_us) ))
    (( left > 0 )) || return 1
    if IFS= read -r -t "$(awk -v u="$left" 'BEGIN { printf "%.3f", u / 1e6 }')" -u "$fd" LINE; then
      LINE_US=$(now_us)
      "$test" "$LINE" && return 0
    else
      return 1  # timed out (status > 128) or end of output
    fi
  done
}

# A probe's node ID for a readable label: the label's bytes padded with spaces to 32, in base32
# (the LAN tests' Lab.nodeID does the same).
lab_node_id() { printf '%-32s' "$1" | base32 -w0 | tr -d '=' | tr 'A-Z' 'a-z'; }

WANT_NODE=""
is_start() { [[ $1 == *'"event":"start"'* ]]; }
is_up() { [[ $1 == *'"event":"up"'* && $1 == *"\"node\":\"$WANT_NODE\""* ]]; }
is_advertised() { [[ $1 == *'"advertised on the LAN"'* ]]; }
is_down() { [[ $1 == *'"event":"down"'* && $1 == *"\"node\":\"$WANT_NODE\""* ]]; }
ms_of() { sed -n 's/.*"ms":\([0-9.-]*\).*/\1/p' <<<"$1"; }

wait_file() {  # file pattern seconds: a line matching pattern appears in file (polled, bounded)
  local deadline=$(( $(now_us) + $3 * 1000000 ))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    (( $(now_us) < deadline )) || return 1
    sleep 0.02
  done
}

# summary NAME FILE : FILE has one sample (ms) per line
summary() {
  sort -n "$2" | awk -v name="$1" '
    { v[NR] = $1 }
    END {
      if (NR == 0) { printf "%-36s no samples\n", name; exit }
      med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      r = int(0.95 * NR); if (r < 0.95 * NR) r++   # nearest rank: ceil(0.95 n)
      printf "%-36s n=%-3d min %7.1f  median %7.1f  p95 %7.1f  max %7.1f ms\n", name, NR, v[1], med, v[r], v[NR]
    }'
}

log "probe: $PROBE"
log "lab: $PARLEYLAB_PREFIX ($PARLEYLAB_SUBNET.0/24), $N samples each, browser advertises: $ADVERTISE"
"$LAB" up 2 >/dev/null
declare -A BUS=([h1]=$("$LAB" bus h1) [h2]=$("$LAB" bus h2))   # looked up once, outside the timed part

# ---- 1. an already-running peer, resolved by a browser that starts now ----
start_probe h1 "$WORK/publisher.out" --node "$(lab_node_id bench-pub)" --instance "bench publisher" --port 7000
PUBLISHER=$STARTED_PID
wait_file "$WORK/publisher.out" '"advertised on the LAN"' 15 || die "publisher on h1 did not advertise: $(cat "$WORK/publisher.out" "$WORK/h1.stderr")"

# measure_running TAG COLD : N samples of "browser launched on h2 -> up for h1's node" into
# $WORK/TAG.{total,startup,probe}; COLD=1 restarts h2's avahi-daemon before each sample (outside
# the measured time), so its cache is empty and everything has to cross the wire.
measure_running() {
  local tag=$1 cold=$2 k fd t0 t_start deadline total startup probe browser failures=0
  printf '%-6s %9s %9s %9s\n' sample total startup probe
  : >"$WORK/$tag.total"; : >"$WORK/$tag.startup"; : >"$WORK/$tag.probe"
  WANT_NODE=$(lab_node_id bench-pub)
  for (( k = 1; k <= N; k++ )); do
    if [[ $cold == 1 ]]; then
      "$LAB" avahi h2 stop 2>/dev/null && "$LAB" avahi h2 start 2>/dev/null || die "restarting avahi on h2 failed"
    fi
    mkfifo "$WORK/browse.fifo"
    exec {fd}<>"$WORK/browse.fifo"
    t0=$(now_us)
    start_probe h2 "$WORK/browse.fifo" --node "$(lab_node_id bench-obs)" --instance "bench observer" "${BROWSE_FLAGS[@]}"
    browser=$STARTED_PID
    deadline=$(( t0 + TIMEOUT * 1000000 ))
    if read_until "$fd" "$deadline" is_start && t_start=$LINE_US && read_until "$fd" "$deadline" is_up; then
      total=$(ms_between "$t0" "$LINE_US")
      startup=$(ms_between "$t0" "$t_start")
      probe=$(ms_of "$LINE")
      printf '%-6s %9s %9s %9s\n' "$k" "$total" "$startup" "$probe"
      echo "$total" >>"$WORK/$tag.total"; echo "$startup" >>"$WORK/$tag.startup"; echo "$probe" >>"$WORK/$tag.probe"
    else
      printf '%-6s %9s\n' "$k" timeout
      failures=$(( failures + 1 ))
    fi
    stop_probe "$browser"
    exec {fd}<&-
    rm -f "$WORK/browse.fifo"
  done
  echo "$failures" >"$WORK/$tag.failures"
}

echo "# 1. running peer, warm cache (h2's avahi-daemon has heard h1's announcements):"
echo "#    browser launched on h2 -> up for h1's node (ms)"
measure_running running 0
echo
echo "# 1b. running peer, cold cache (h2's avahi-daemon restarted before each sample, not timed):"
echo "#    browser launched on h2 -> up for h1's node (ms)"
measure_running cold 1
stop_probe "$PUBLISHER"

# ---- 2. a node that starts while a browser runs ----
mkfifo "$WORK/observer.fifo"
exec {ofd}<>"$WORK/observer.fifo"
start_probe h2 "$WORK/observer.fifo" --node "$(lab_node_id bench-obs)" --instance "bench observer" "${BROWSE_FLAGS[@]}"
OBSERVER=$STARTED_PID
read_until "$ofd" $(( $(now_us) + 15000000 )) is_start || die "observer on h2 did not start"
if [[ $ADVERTISE == 1 ]]; then  # let its own name settle first
  read_until "$ofd" $(( $(now_us) + 15000000 )) is_advertised || die "observer on h2 did not advertise"
fi

echo
echo "# 2. new peer: publisher launched on h1 -> up on the running browser on h2 (ms)"
printf '%-6s %9s %11s\n' sample total advertised
: >"$WORK/new.total"
failures=0
for (( k = 1; k <= N; k++ )); do
  WANT_NODE=$(lab_node_id "bench-new-$k")
  t0=$(now_us)
  start_probe h1 "$WORK/new-$k.out" --node "$WANT_NODE" --instance "bench new $k" --port 7000
  publisher=$STARTED_PID
  if read_until "$ofd" $(( t0 + TIMEOUT * 1000000 )) is_up; then
    total=$(ms_between "$t0" "$LINE_US")
    advertised=$(ms_of "$(grep -m1 '"advertised on the LAN"' "$WORK/new-$k.out" || true)")
    printf '%-6s %9s %11s\n' "$k" "$total" "${advertised:--}"
    echo "$total" >>"$WORK/new.total"
  else
    printf '%-6s %9s\n' "$k" timeout
    failures=$(( failures + 1 ))
  fi
  stop_probe "$publisher"
  read_until "$ofd" $(( $(now_us) + TIMEOUT * 1000000 )) is_down || log "no down for $WANT_NODE on h2"
done
stop_probe "$OBSERVER"
new_failures=$failures

echo
echo "# summary (probe: $PROBE; browser advertises: $ADVERTISE)"
summary "1. running peer: launch -> up" "$WORK/running.total"
summary "   of which startup (-> 1st line)" "$WORK/running.startup"
summary "   of which discovery (probe ms)" "$WORK/running.probe"
summary "1b. running peer, cold cache: -> up" "$WORK/cold.total"
summary "   of which startup (-> 1st line)" "$WORK/cold.startup"
summary "   of which discovery (probe ms)" "$WORK/cold.probe"
summary "2. new peer: launch -> up" "$WORK/new.total"
echo "timeouts: running peer $(<"$WORK/running.failures"), cold cache $(<"$WORK/cold.failures"), new peer $new_failures"
for tag in running cold; do
  p95=$(sort -n "$WORK/$tag.total" | awk '{ v[NR] = $1 } END { r = int(0.95 * NR); if (r < 0.95 * NR) r++; print (NR ? v[r] : 99999) }')
  if awk -v p="$p95" 'BEGIN { exit !(p <= 500) }'; then
    echo "target (running peer p95 <= 500 ms), $tag cache: met ($p95 ms)"
  else
    echo "target (running peer p95 <= 500 ms), $tag cache: NOT met ($p95 ms)"
  fi
done
