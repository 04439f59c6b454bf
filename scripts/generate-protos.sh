#!/usr/bin/env bash
# Regenerates Sources/Model/livesync/v1/livesync.pb.swift from Protos/ (the generated code is committed,
# so builds never need protoc). Needs protoc (apt-get install protobuf-compiler); builds protoc-gen-swift once.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
plugin_dir=.build-protoc
if [ ! -x "$plugin_dir/release/protoc-gen-swift" ]; then
  swift build -c release --scratch-path "$plugin_dir" --package-path .build/checkouts/swift-protobuf --product protoc-gen-swift
fi
protoc --plugin=protoc-gen-swift="$plugin_dir/release/protoc-gen-swift" --swift_opt=Visibility=Public \
  --swift_out=Sources/Model -I Protos Protos/livesync/v1/livesync.proto
