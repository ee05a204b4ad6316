#!/usr/bin/env python3
"""Measures a Parley server's memory per idle, logged-on connection.

Opens N connections (HELLO + REGISTER, which logs on), leaves them idle, and compares the
server's resident memory (VmRSS from /proc/PID/status) before and after. Loopback only.

    python3 bench/idle_connections.py --server 127.0.0.1:PORT --pid SERVER_PID --connections 10000 \
        [--fingerprint sha256:HEX | --plaintext]
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
import parley_client  # noqa: E402  (the independent client written from docs/PROTOCOL.md)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to let the server settle")
    parser.add_argument("--fingerprint", help="the server's TLS fingerprint (sha256:HEX) to pin")
    parser.add_argument("--plaintext", action="store_true", help="for a server run with --insecure-plaintext")
    args = parser.parse_args()
    host, port = args.server.rsplit(":", 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections + 100)), hard))

    # Warm up: one connection, so one-time allocations are not counted per connection.
    tls = {"tls": not args.plaintext, "fingerprint": args.fingerprint}
    warm = parley_client.Connection(host, int(port), **tls)
    warm.hello()
    warm.register("idle-warm", "pw")
    time.sleep(args.settle)
    before = rss_kib(args.pid)

    connections = []
    started = time.monotonic()
    suffix = os.getpid()
    for i in range(args.connections):
        connection = parley_client.Connection(host, int(port), timeout=30, **tls)
        connection.hello()
        connection.register(f"idle-{suffix}-{i}", "pw")
        connections.append(connection)
    elapsed = time.monotonic() - started
    time.sleep(args.settle)
    after = rss_kib(args.pid)
    per_connection = (after - before) * 1024 / args.connections
    result = {
        "connections": args.connections,
        "rssBeforeKiB": before,
        "rssAfterKiB": after,
        "bytesPerConnection": round(per_connection),
        "setupSeconds": round(elapsed, 1),
    }
    print(json.dumps(result, sort_keys=True))
    for connection in connections:
        connection.close()
    warm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
