#!/usr/bin/env bash
# Installs a Parley server as a systemd service: builds the release binary, installs it as
# /usr/local/bin/parley, the unit as /etc/systemd/system/parley-server.service and a default
# /etc/parley/server.json and server.env (kept if they exist). Run as root from the repository.
#
#   ./scripts/install-server.sh            # install (or upgrade: the same command)
#   PREFIX=/opt/parley ./scripts/install-server.sh   # binary in $PREFIX/bin instead
#   DESTDIR=/tmp/stage ./scripts/install-server.sh    # stage the files only (no systemctl)
#   PARLEY_BINARY=path ./scripts/install-server.sh     # install this binary instead of building one
#
# Then: systemctl enable --now parley-server; journalctl -u parley-server shows the TLS
# fingerprint clients pin.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || [ -n "${DESTDIR:-}" ] || { echo "install-server.sh: run as root (or set DESTDIR)" >&2; exit 1; }

source scripts/deps.sh
parley_install_debian_packages

prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}

if [ -n "${PARLEY_BINARY:-}" ]; then
    binary=$PARLEY_BINARY
else
    echo "== building the release binary"
    source scripts/release-build.sh
    parley_release_build --product parley
    binary=$(parley_release_bin_path)/parley
fi
[ -x "$binary" ] || { echo "install-server.sh: no executable at $binary" >&2; exit 1; }

echo "== installing"
install -D -m 0755 "$binary" "$destdir$prefix/bin/parley"
unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed "s#/usr/local/bin/parley#$prefix/bin/parley#" dist/parley-server.service >"$unit"
install -D -m 0644 "$unit" "$destdir/etc/systemd/system/parley-server.service"
for file in server.json server.env; do
    if [ -e "$destdir/etc/parley/$file" ]; then
        echo "   keeping $destdir/etc/parley/$file"
    else
        install -D -m 0644 "dist/$file" "$destdir/etc/parley/$file"
    fi
done
echo "   $destdir$prefix/bin/parley"
echo "   $destdir/etc/systemd/system/parley-server.service"
echo "   $destdir/etc/parley/server.json, $destdir/etc/parley/server.env"

if [ -z "$destdir" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if systemctl is-active --quiet parley-server; then
        echo "== restarting the running server (upgrade)"
        systemctl restart parley-server
    else
        echo "enable and start it with: systemctl enable --now parley-server"
    fi
else
    echo "(systemd is not running here: the unit is installed but not started)"
fi
