#!/usr/bin/env bash
# The main job: a live session end to end on the embedded broker (no Kafka needed).
# Extra arguments go to `livesync demo` (e.g. --orders 300000 --json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
if [ $# -eq 0 ]; then set -- --orders 20000; fi
exec .build/release/livesync demo "$@"
