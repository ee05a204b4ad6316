#!/usr/bin/env bash
# The package's module graph as Package.swift declares it (and the build's
# --explicit-target-dependency-import-check enforces): one line per library or executable
# target, with the Parley targets it depends on.
#
#   ./scripts/module-graph.sh            # prints the edge list
#   ./scripts/module-graph.sh --check    # fails when docs/ARCHITECTURE.md's copy differs
set -euo pipefail
cd "$(dirname "$0")/.."
graph=$(swift package dump-package 2>/dev/null | python3 -c '
import json, sys
package = json.load(sys.stdin)
names = {target["name"] for target in package["targets"]}
for target in package["targets"]:
    if target["type"] == "test":
        continue
    deps = []
    for dependency in target["dependencies"]:
        for kind in ("byName", "target"):
            if kind in dependency and dependency[kind][0] in names:
                deps.append(dependency[kind][0])
    print(target["name"], "->", ", ".join(deps) if deps else "(nothing of Parley)")
')
if [ "${1:-}" = --check ]; then
    documented=$(sed -n '/^<!-- module-graph:begin -->$/,/^<!-- module-graph:end -->$/p' docs/ARCHITECTURE.md | grep -- ' -> ' || true)
    if [ "$documented" != "$graph" ]; then
        echo "docs/ARCHITECTURE.md's module graph differs from Package.swift; run ./scripts/module-graph.sh and paste:" >&2
        diff <(echo "$documented") <(echo "$graph") >&2 || true
        exit 1
    fi
    echo "module graph in docs/ARCHITECTURE.md matches Package.swift"
else
    echo "$graph"
fi
