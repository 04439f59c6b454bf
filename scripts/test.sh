#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test (unit and
# integration tests against the embedded broker with the real executables).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/validate-deploy.sh
swift build --build-tests
swift test --skip-build --no-parallel "$@"
