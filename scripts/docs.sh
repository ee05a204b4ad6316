#!/usr/bin/env bash
# The API documentation, built the way CI checks it:
#  1. the snippets that the DocC articles show (Snippets/*.swift, each a small program that
#     SwiftPM builds against the package's libraries), so an article cannot show code that no
#     longer compiles; a warning in a snippet fails too;
#  2. the DocC catalogs of the public modules (Sources/<Module>/Documentation.docc plus the doc
#     comments) with swift-docc-plugin, warnings as errors (an unresolved symbol or article link,
#     a missing snippet or slice, a malformed doc comment all fail), combined into one archive
#     in which modules link to the modules they depend on.
# Run it after the build (scripts/test.sh): it builds incrementally in the same .build.
# Output: .build/docs/Parley.doccarchive (`docc preview` or any static web server shows it).
set -euo pipefail
cd "$(dirname "$0")/.."

# The documented modules: the three SDK modules (ParleyServer, ParleyClient, ParleyNode), the
# vocabulary and discovery modules their API is made of, and the Avahi discovery a node is given.
# Each links to the documented modules it depends on (`/ParleyCore/UserID` in a doc comment).
modules=(ParleyCore ParleyDiscovery ParleyAvahi ParleyClient ParleyServer ParleyNode)

echo "== docs: snippets (Snippets/*.swift)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Compiled again each time, so that their warnings are seen even when the build is up to date.
# One `swift build` builds every product, snippets included (incrementally after scripts/test.sh).
touch Snippets/*.swift
if ! swift build >"$log" 2>&1; then
    cat "$log"
    echo "docs: a snippet (or the package) does not build"
    exit 1
fi
if grep -E "Snippets/[^:]+:[0-9]+:[0-9]+: warning:" "$log"; then
    echo "docs: a snippet has warnings (they are errors here)"
    exit 1
fi
echo "== docs: snippets built (${SECONDS}s)"

echo "== docs: DocC (${modules[*]}), warnings are errors"
targets=()
for module in "${modules[@]}"; do targets+=(--target "$module"); done
output=.build/docs/Parley.doccarchive
mkdir -p .build/docs
swift package --allow-writing-to-directory .build/docs \
    generate-documentation "${targets[@]}" \
    --enable-experimental-combined-documentation \
    --warnings-as-errors \
    --output-path "$output"
echo "== docs: built $output (${SECONDS}s in all)"
