#!/usr/bin/env bash
# Regenerates Sources/ParleyWire/Generated/*.pb.swift from proto/*.proto.
# Needs Debian's protobuf-compiler and the protoc-gen-swift plugin built from the same
# swift-protobuf version that Package.swift names (built here into .build-protoc/ if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.39.0
command -v protoc >/dev/null || { apt-get update && apt-get install -y --no-install-recommends protobuf-compiler; }
plugin=.build-protoc/release/protoc-gen-swift
if [ ! -x "$plugin" ]; then
    mkdir -p .build-protoc/pkg
    cat > .build-protoc/pkg/Package.swift <<PKG
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "protoc-plugin",
    dependencies: [.package(url: "https://github.com/apple/swift-protobuf", exact: "$version")],
    targets: []
)
PKG
    swift build -c release --package-path .build-protoc/pkg --scratch-path .build-protoc --product protoc-gen-swift
fi
protoc --plugin=protoc-gen-swift="$plugin" \
    --swift_opt=Visibility=Package --swift_opt=UseAccessLevelOnImports=true \
    --swift_out=Sources/ParleyWire/Generated \
    --proto_path=proto proto/*.proto
echo "generated: $(ls Sources/ParleyWire/Generated/*.pb.swift)"
