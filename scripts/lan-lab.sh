#!/usr/bin/env bash
# lan-lab.sh - Parley's LAN lab: a simulated LAN of N "hosts" (network namespaces on one Linux
# bridge). Each host runs its own D-Bus system bus and its own avahi-daemon, so mDNS/DNS-SD
# between hosts goes over real (virtual) Ethernet and multicast. No traffic leaves the lab.
#
#   lan-lab.sh deps                 install the Debian packages the lab needs (if missing)
#   lan-lab.sh up N                 build (or keep, if already healthy) a lab with hosts h1..hN
#   lan-lab.sh down                 kill everything in the lab namespaces, delete them, remove state
#   lan-lab.sh status               hosts, addresses, daemon pids, avahi state
#   lan-lab.sh exec HOST CMD...     run CMD inside HOST (h1 or 1) with DBUS_SYSTEM_BUS_ADDRESS set
#   lan-lab.sh avahi HOST stop|kill|start   failure injection (SIGTERM / SIGKILL / restart)
#   lan-lab.sh link HOST IFACE down|up      failure injection: one interface of HOST down / up
#   lan-lab.sh bus HOST             print HOST's DBUS_SYSTEM_BUS_ADDRESS
#
# Env: PARLEYLAB_PREFIX (parleylab: namespaces parleylab-sw, parleylab-h1, ...),
#      PARLEYLAB_STATE (/run/$PREFIX), PARLEYLAB_SUBNET (10.231.0 -> h1 = 10.231.0.1/24),
#      PARLEYLAB_IPV6 = 0 (IPv4 only, default) | 1 (also fd70::N/64 and link-local) | ll (link-local only),
#      PARLEYLAB_NICS = 1 (eth0 only, default) | 2 (every host also has eth1 on a second bridge br1,
#        address $PARLEYLAB_SUBNET2.N/24, fd71::N/64 with IPV6=1; avahi uses eth0 and eth1),
#      PARLEYLAB_SUBNET2 (default: the second octet of PARLEYLAB_SUBNET plus 10, e.g. 10.231.0 -> 10.241.0,
#        10.232.0 -> 10.242.0, so labs whose first subnets differ get second subnets that differ too).
# The prefix keeps this lab apart from any other lab on the machine (e.g. shared/lan-lab's "lanlab").
# Needs root with CAP_NET_ADMIN + CAP_SYS_ADMIN (ip netns, mount), veth + bridge kernel support and
# the packages iproute2 iptables dbus avahi-daemon avahi-utils (`lan-lab.sh deps` installs them).
# Adapted from shared/lan-lab/netns-lab.sh (tested recipe; see its README for the measurements).
set -euo pipefail

PREFIX=${PARLEYLAB_PREFIX:-parleylab}
STATE=${PARLEYLAB_STATE:-/run/$PREFIX}
SUBNET=${PARLEYLAB_SUBNET:-10.231.0}
IPV6=${PARLEYLAB_IPV6:-0}
NICS=${PARLEYLAB_NICS:-1}
SW=$PREFIX-sw

die() { echo "lan-lab: $*" >&2; exit 1; }
log() { echo "lan-lab: $*" >&2; }

[[ $PREFIX =~ ^[a-z][a-z0-9]{0,11}$ ]] || die "PARLEYLAB_PREFIX must be 1-12 lowercase letters/digits"
[[ $IPV6 == 0 || $IPV6 == 1 || $IPV6 == ll ]] || die "PARLEYLAB_IPV6 must be 0, 1 or ll"
[[ $NICS == 1 || $NICS == 2 ]] || die "PARLEYLAB_NICS must be 1 or 2"
octets3='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$'
[[ $SUBNET =~ $octets3 ]] || die "PARLEYLAB_SUBNET must be three octets, e.g. 10.231.0"
# second subnet: second octet + 10 (10.231.0 -> 10.241.0); wraps below 256 (10.250.0 -> 10.4.0)
SUBNET2=${PARLEYLAB_SUBNET2:-${BASH_REMATCH[1]}.$(( (BASH_REMATCH[2] + 10) % 256 )).${BASH_REMATCH[3]}}
[[ $SUBNET2 =~ $octets3 ]] || die "PARLEYLAB_SUBNET2 must be three octets, e.g. 10.241.0"
[[ $SUBNET2 != "$SUBNET" ]] || die "PARLEYLAB_SUBNET2 must differ from PARLEYLAB_SUBNET"

usage() {
  cat <<EOF
usage: $0 deps | up N | down | status | exec HOST CMD... | avahi HOST stop|kill|start
          | link HOST IFACE down|up | bus HOST

  deps        install the project's Debian packages (scripts/deps.sh) if any is missing
  up N        hosts h1..hN (N>=1) = netns $PREFIX-h1.., addresses $SUBNET.1..N/24 on eth0,
              all plugged into bridge br0 in netns $SW. Each host runs dbus-daemon
              (bus at $STATE/hI/dbus.sock) and avahi-daemon (host name hI.local).
              With PARLEYLAB_NICS=2 every host also has eth1 = $SUBNET2.1..N/24 on bridge br1.
              Idempotent: a healthy lab with the same N (and subnets, ipv6, nics) is left alone;
              anything else is rebuilt.
  down        kills every process inside the lab namespaces, deletes them, removes $STATE
  exec H CMD  ip netns exec $PREFIX-H env DBUS_SYSTEM_BUS_ADDRESS=unix:path=$STATE/H/dbus.sock CMD
  avahi H stop|kill|start   SIGTERM / SIGKILL / (re)start the avahi-daemon of host H
  link H IFACE down|up      ip link set IFACE (eth0, eth1) of host H down / up (addresses are kept)
  bus H       prints the D-Bus system bus address of host H

examples:
  $0 up 3
  $0 exec h1 avahi-publish-service -s "peer one" _parley._tcp 7000 pv=1 node=n1 &
  $0 exec h2 avahi-browse -rpt _parley._tcp
  PARLEYLAB_NICS=2 $0 up 2; $0 link h1 eth0 down
  $0 down
EOF
}

need_root() {
  [[ $(id -u) == 0 ]] || die "must run as root"
  local c
  for c in ip dbus-daemon dbus-send avahi-daemon; do
    command -v "$c" >/dev/null || die "missing $c (run: $0 deps)"
  done
}

cmd_deps() {  # the project's one list of Debian packages (scripts/deps.sh) includes the lab's
  [[ $(id -u) == 0 ]] || die "must run as root"
  # shellcheck source=scripts/deps.sh
  source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
  parley_install_debian_packages
}

host_name() {  # "h2" | "2" -> "h2"
  local h=${1#h}
  [[ $h =~ ^[0-9]+$ ]] || die "bad host '$1' (want h1, h2, ... or 1, 2, ...)"
  echo "h$h"
}
bus_of() { echo "unix:path=$STATE/$1/dbus.sock"; }

# pid from file, only if that pid is alive and still runs the expected program
live_pid() {  # file prog
  local pid cmd
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$2"* ]] || return 1
  echo "$pid"
}

avahi_state() {  # host -> 2 = AVAHI_SERVER_RUNNING
  dbus-send --bus="$(bus_of "$1")" --print-reply=literal --reply-timeout=1000 \
    --dest=org.freedesktop.Avahi / org.freedesktop.Avahi.Server.GetState 2>/dev/null | awk '{print $2}'
}

wait_for() {  # seconds description command...
  local deadline=$(( $(date +%s%N) + $1 * 1000000000 )) what=$2; shift 2
  until "$@"; do
    (( $(date +%s%N) < deadline )) || { log "timeout waiting for $what"; return 1; }
    sleep 0.05
  done
}

write_configs() {  # host index
  local h=$1 i=$2 d=$STATE/$1 v6=no ifaces=eth0
  [[ $IPV6 != 0 ]] && v6=yes
  [[ $NICS == 2 ]] && ifaces=eth0,eth1
  mkdir -p "$d/avahi-run"
  cat >"$d/dbus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$d/dbus.sock</listen>
  <auth>EXTERNAL</auth>
  <!-- lab bus: permissive policy (everything runs as root anyway) -->
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
EOF
  cat >"$d/avahi-daemon.conf" <<EOF
[server]
host-name=$h
domain-name=local
use-ipv4=yes
use-ipv6=$v6
allow-interfaces=$ifaces
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
publish-aaaa-on-ipv4=$v6
publish-a-on-ipv6=no
[reflector]
[rlimits]
EOF
}

start_dbus() {  # host
  local h=$1 d=$STATE/$1
  rm -f "$d/dbus.sock"
  # sh writes its own pid, then execs: the pid file holds the daemon's pid.
  setsid ip netns exec "$PREFIX-$h" sh -c 'echo $$ >"$1/dbus.pid"; exec dbus-daemon --config-file="$1/dbus.conf" --nofork --nopidfile' \
    sh "$d" >"$d/dbus.log" 2>&1 </dev/null &
}

start_avahi() {  # host
  local h=$1 d=$STATE/$1
  if [[ ! -d /run/avahi-daemon ]]; then   # mount point; avahi's pid file + socket dir is compiled in
    mkdir -p /run/avahi-daemon && : >"$STATE/made-avahi-run-dir"
  fi
  # ip netns exec runs in a fresh (slave) mount namespace, so this bind mount stays private
  # to this daemon: every host gets its own /run/avahi-daemon/{pid,socket}.
  setsid ip netns exec "$PREFIX-$h" env DBUS_SYSTEM_BUS_ADDRESS="$(bus_of "$h")" sh -c '
      mount --bind "$1/avahi-run" /run/avahi-daemon && echo $$ >"$1/avahi.pid" &&
      exec avahi-daemon -f "$1/avahi-daemon.conf" --no-drop-root --no-chroot --no-rlimits --no-proc-title' \
    sh "$d" >>"$d/avahi.log" 2>&1 </dev/null &
}

dbus_ready() { dbus-send --bus="$(bus_of "$1")" --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetId >/dev/null 2>&1; }
avahi_ready() { [[ $(avahi_state "$1") == 2 ]]; }

lab_config() {  # N -> the settings a lab was built with (healthy compares them)
  if [[ $NICS == 2 ]]; then echo "$1 $SUBNET ipv6=$IPV6 nics=$NICS subnet2=$SUBNET2"
  else echo "$1 $SUBNET ipv6=$IPV6 nics=$NICS"
  fi
}

healthy() {  # N
  [[ -f $STATE/config ]] && [[ $(<"$STATE/config") == "$(lab_config "$1")" ]] || return 1
  ip netns list | grep -qw "$SW" || return 1
  local i
  for (( i = 1; i <= $1; i++ )); do
    live_pid "$STATE/h$i/dbus.pid" dbus-daemon >/dev/null || return 1
    live_pid "$STATE/h$i/avahi.pid" avahi-daemon >/dev/null || return 1
    avahi_ready "h$i" || return 1
  done
}

# any live (non-zombie) avahi-daemon on the machine, in any namespace
avahi_running_anywhere() {
  local p
  for p in $(pgrep -x avahi-daemon 2>/dev/null || true); do
    [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) =~ ^[^ZX]$ ]] && return 0
  done
  return 1
}

lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-(sw|h[0-9]+)$" || true; }

cmd_down() {
  local ns pids n=0
  for ns in $(lab_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then kill -TERM $pids 2>/dev/null || true; n=$((n + $(wc -w <<<"$pids"))); fi
  done
  if (( n > 0 )); then
    for _ in $(seq 30); do   # up to 3 s for graceful exit
      pids=""
      for ns in $(lab_namespaces); do pids+=" $(ip netns pids "$ns" 2>/dev/null || true)"; done
      [[ -z ${pids// /} ]] && break
      sleep 0.1
    done
    [[ -n ${pids// /} ]] && kill -KILL $pids 2>/dev/null || true
  fi
  for ns in $(lab_namespaces); do ip netns del "$ns"; done
  # The mount point is shared by every lab on the machine: remove it only if this lab made it
  # and no avahi-daemon anywhere still uses it.
  if [[ -f $STATE/made-avahi-run-dir ]] && ! avahi_running_anywhere; then
    rmdir /run/avahi-daemon 2>/dev/null || true
  fi
  rm -rf "$STATE"
  log "down (stopped $n processes)"
}

cmd_up() {
  local n=${1:-}
  [[ $n =~ ^[1-9][0-9]*$ ]] && (( n <= 250 )) || die "usage: up N   (1 <= N <= 250)"
  if healthy "$n"; then log "already up with $n hosts (same subnet/ipv6/nics settings)"; cmd_status; return 0; fi
  local t0; t0=$(date +%s%N)
  cmd_down >/dev/null 2>&1 || true
  mkdir -p "$STATE"
  trap 'rc=$?; if (( rc )); then log "up failed, tearing down"; cmd_down >/dev/null 2>&1; fi' EXIT
  ip netns add "$SW"
  ip netns exec "$SW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$SW" link set lo up
  ip -n "$SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ip -n "$SW" link set br0 up
  if [[ $NICS == 2 ]]; then
    ip -n "$SW" link add br1 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$SW" link set br1 up
  fi
  local i h ns
  for (( i = 1; i <= n; i++ )); do
    h=h$i ns=$PREFIX-h$i
    ip netns add "$ns"
    # sysctls before eth0 exists, so it inherits "default"
    if [[ $IPV6 == 0 ]]; then
      ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    else
      # no duplicate address detection: the link-local address is usable at once
      ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    fi
    ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$SW" link set "p$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
    [[ $IPV6 == 1 ]] && ip -n "$ns" addr add "fd70::$i/64" dev eth0 nodad
    ip -n "$ns" link set eth0 up
    if [[ $NICS == 2 ]]; then
      ip -n "$SW" link add "q$i" type veth peer name eth1 netns "$ns"
      ip -n "$SW" link set "q$i" master br1 up
      ip -n "$ns" addr add "$SUBNET2.$i/24" dev eth1
      [[ $IPV6 == 1 ]] && ip -n "$ns" addr add "fd71::$i/64" dev eth1 nodad
      ip -n "$ns" link set eth1 up
    fi
    write_configs "$h" "$i"
  done
  for (( i = 1; i <= n; i++ )); do start_dbus "h$i"; done
  for (( i = 1; i <= n; i++ )); do wait_for 10 "dbus h$i" dbus_ready "h$i" || die "dbus h$i failed: $(cat "$STATE/h$i/dbus.log")"; done
  for (( i = 1; i <= n; i++ )); do start_avahi "h$i"; done
  for (( i = 1; i <= n; i++ )); do wait_for 15 "avahi h$i" avahi_ready "h$i" || die "avahi h$i failed: $(cat "$STATE/h$i/avahi.log")"; done
  trap - EXIT
  echo "$n" >"$STATE/hosts"
  lab_config "$n" >"$STATE/config"
  log "up: $n hosts in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  cmd_status
}

# "ADDR" of IFACE on host H, with "(down)" when the interface is administratively down
iface_address() {  # host iface address
  local flags
  flags=$(ip -n "$PREFIX-$1" -o link show dev "$2" 2>/dev/null | sed -n 's/^[0-9]*: [^<]*<\([^>]*\)>.*/\1/p')
  if [[ -z $flags ]]; then echo "$3(missing)"
  elif [[ ,$flags, == *,UP,* ]]; then echo "$3"
  else echo "$3(down)"
  fi
}

cmd_status() {
  [[ -f $STATE/hosts ]] || { echo "lab is down"; return 1; }
  local n i h dp ap addr subnet=$SUBNET subnet2=$SUBNET2 nics=$NICS config field
  n=$(<"$STATE/hosts")
  # the settings the lab was built with (they may differ from this shell's environment)
  if [[ -f $STATE/config ]]; then
    read -r -a config <"$STATE/config"
    subnet=${config[1]:-$SUBNET}
    for field in "${config[@]:2}"; do
      case $field in nics=*) nics=${field#nics=};; subnet2=*) subnet2=${field#subnet2=};; esac
    done
  fi
  printf '%-4s %-14s %-30s %-8s %-8s %s\n' HOST NETNS ADDRESS DBUS AVAHI "DBUS_SYSTEM_BUS_ADDRESS"
  for (( i = 1; i <= n; i++ )); do
    h=h$i
    dp=$(live_pid "$STATE/$h/dbus.pid" dbus-daemon || echo dead)
    ap=$(live_pid "$STATE/$h/avahi.pid" avahi-daemon || echo dead)
    [[ $ap != dead ]] && [[ $(avahi_state "$h") != 2 ]] && ap="$ap(!run)"
    addr=$(iface_address "$h" eth0 "$subnet.$i")
    [[ $nics == 2 ]] && addr+=",$(iface_address "$h" eth1 "$subnet2.$i")"
    printf '%-4s %-14s %-30s %-8s %-8s %s\n' "$h" "$PREFIX-$h" "$addr" "$dp" "$ap" "$(bus_of "$h")"
  done
}

cmd_exec() {
  [[ $# -ge 2 ]] || die "usage: exec HOST CMD..."
  local h; h=$(host_name "$1"); shift
  [[ -d $STATE/$h ]] || die "no such host $h (is the lab up?)"
  exec ip netns exec "$PREFIX-$h" env DBUS_SYSTEM_BUS_ADDRESS="$(bus_of "$h")" PARLEYLAB_HOST="$h" "$@"
}

cmd_avahi() {
  [[ $# -eq 2 ]] || die "usage: avahi HOST stop|kill|start"
  local h pid; h=$(host_name "$1")
  [[ -d $STATE/$h ]] || die "no such host $h (is the lab up?)"
  case $2 in
    stop|kill)
      pid=$(live_pid "$STATE/$h/avahi.pid" avahi-daemon) || die "avahi on $h not running"
      kill "-$([[ $2 == kill ]] && echo KILL || echo TERM)" "$pid"
      wait_for 5 "avahi $h exit" bash -c "! kill -0 $pid 2>/dev/null"
      rm -f "$STATE/$h/avahi.pid" "$STATE/$h/avahi-run/pid"   # SIGKILL leaves a stale pid file
      log "avahi on $h: $2 (pid $pid)";;
    start)
      live_pid "$STATE/$h/avahi.pid" avahi-daemon >/dev/null && { log "avahi on $h already running"; return 0; }
      rm -f "$STATE/$h/avahi-run/pid"
      start_avahi "$h"
      wait_for 15 "avahi $h" avahi_ready "$h" || die "avahi $h failed: $(tail -5 "$STATE/$h/avahi.log")"
      log "avahi on $h: started (pid $(<"$STATE/$h/avahi.pid"))";;
    *) die "usage: avahi HOST stop|kill|start";;
  esac
}

cmd_link() {
  [[ $# -eq 3 && ( $3 == down || $3 == up ) ]] || die "usage: link HOST IFACE down|up"
  local h; h=$(host_name "$1")
  [[ -d $STATE/$h ]] || die "no such host $h (is the lab up?)"
  [[ $2 =~ ^[a-z][a-z0-9]{0,14}$ ]] || die "bad interface name '$2'"
  ip -n "$PREFIX-$h" link show dev "$2" >/dev/null 2>&1 || die "host $h has no interface $2"
  ip -n "$PREFIX-$h" link set dev "$2" "$3"
  log "link $2 on $h: $3"
}

cmd_bus() {
  [[ $# -eq 1 ]] || die "usage: bus HOST"
  local h; h=$(host_name "$1")
  [[ -d $STATE/$h ]] || die "no such host $h (is the lab up?)"
  bus_of "$h"
}

case ${1:-} in
  deps) cmd_deps;;
  up) need_root; cmd_up "${2:-}";;
  down) need_root; cmd_down;;
  status) cmd_status;;
  exec) shift; need_root; cmd_exec "$@";;
  avahi) shift; need_root; cmd_avahi "$@";;
  link) shift; need_root; cmd_link "$@";;
  bus) shift; cmd_bus "$@";;
  -h|--help|help) usage;;
  *) usage; exit 64;;
esac
