#!/usr/bin/env bash
# Installs the system libraries LiveSync builds against, when missing (Debian/Ubuntu):
# librdkafka-dev (Kafka client + mock cluster), libsqlite3-dev, pkg-config, kcat (topic inspection, tests),
# chromium and fonts-wqy-zenhei (dashboard test), python3 with venv (a real Tryton for the ERP adapter's tests).
set -euo pipefail
need=()
pkg-config --exists rdkafka 2>/dev/null || need+=(librdkafka-dev)
[ -f /usr/include/librdkafka/rdkafka_mock.h ] || need+=(librdkafka-dev)
[ -f /usr/include/sqlite3.h ] || need+=(libsqlite3-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v kcat >/dev/null || need+=(kcat)
# Headless Chromium and a CJK font for the dashboard test (screenshot, figures check).
command -v chromium >/dev/null || need+=(chromium)
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
# Python 3 with venv/ensurepip: scripts/tryton.sh installs Tryton 8.2 from PyPI into a venv.
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi
# Tryton 8.2 (trytond, sale, stock, proteus) in ${LIVESYNC_TRYTON_HOME:-~/.cache/livesync-tryton}/venv.
"$(dirname "$0")/tryton.sh" install
