#!/usr/bin/env bash
# The one list of Debian packages Parley's build, demo and tests need, and the function that
# installs the missing ones. Sourced by scripts/demo.sh, scripts/demo-lan.sh, scripts/test.sh and
# scripts/lan-lab.sh (`deps`); run it directly to install them: `./scripts/deps.sh`.
#
#   libsqlite3-dev        SQLite for the store (GRDB links the system library)
#   libavahi-client-dev   the CAvahi module (LAN discovery) needs its headers to build at all
#   python3               the independent interop client in tests/interop
#   openssl               its node peer makes node keys and self-signed certificates with it
#   chromium              a real headless browser loads `parley server`'s status page in a test
#   avahi-daemon avahi-utils dbus iproute2 iptables
#                         the LAN lab: network namespaces, one D-Bus + avahi-daemon per host,
#                         a firewall rule that cuts a direct link
parley_debian_packages=(
    libsqlite3-dev
    libavahi-client-dev
    python3
    openssl
    chromium
    avahi-daemon
    avahi-utils
    dbus
    iproute2
    iptables
)

# Installs whatever of the list is missing (apt-get needs root; a non-root user with everything
# installed already is fine). Prints one line when it installs something.
parley_install_debian_packages() {
    local missing=() p
    for p in "${parley_debian_packages[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${missing[*]}; install them as root (sudo ./scripts/deps.sh)" >&2
        return 1
    fi
    echo "== installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    parley_install_debian_packages
fi
