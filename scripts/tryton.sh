#!/usr/bin/env bash
# A real Tryton 8.2 (SQLite backend) on 127.0.0.1 for tests, `livesync dev --erp tryton` and the demo.
#
#   scripts/tryton.sh install                    # venv + trytond, trytond-sale, trytond-stock 8.2.x, proteus (idempotent)
#   scripts/tryton.sh setup <dir> [stock.json]   # database <dir>/livesync.sqlite: company (CNY), warehouses, customer, products, stock
#   scripts/tryton.sh start <dir> [port]         # trytond on 127.0.0.1:<port> (default 8000), waits until JSON-RPC answers
#   scripts/tryton.sh stop <dir>                 # stops it (pid file <dir>/trytond.pid)
#   scripts/tryton.sh status <dir>               # prints URL/database/login if running
#
# The venv lives in ${LIVESYNC_TRYTON_HOME:-$HOME/.cache/livesync-tryton}/venv.
# Development login: admin / livesync-dev (LIVESYNC_TRYTON_PASSWORD overrides). Database name: livesync.
# Customers: party code LIVESYNC, plus one party per code in LIVESYNC_TRYTON_CUSTOMERS (space-separated, e.g. per shop).
# stock.json: [{"sku": "SKU-0000", "warehouse": "main", "quantity": 1000}, ...]; without it, SKU-0000..SKU-0199
# with 1000 units each in `main`, or `east` when the SKU index i % 5 == 4 (as the dev replay places them).
# `start` prints `url=… database=… login=… password=…` on one line, so callers can parse it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
home="${LIVESYNC_TRYTON_HOME:-$HOME/.cache/livesync-tryton}"
venv="$home/venv"
version="${LIVESYNC_TRYTON_VERSION:-8.2}"
db="livesync"
login="admin"
password="${LIVESYNC_TRYTON_PASSWORD:-livesync-dev}"

die() { echo "tryton.sh: $*" >&2; exit 1; }

write_conf() { # <dir>
  local dir="$1"
  cat >"$dir/trytond.conf" <<EOF
[database]
uri = sqlite://
path = $dir

[web]
listen = 127.0.0.1:${2:-8000}

[session]
# Long enough for a demo; tests invalidate sessions on purpose instead of waiting.
timeout = 86400
max_attempt = 1000
EOF
}

cmd_install() {
  local stamp="$venv/.livesync-installed-$version"
  if [ -f "$stamp" ]; then echo "tryton $version already installed in $venv"; return 0; fi
  mkdir -p "$home"
  command -v python3 >/dev/null || die "python3 is needed (Debian: apt-get install python3 python3-venv)"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  "$venv/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$venv/bin/pip" install -q \
    "trytond>=$version,<$version.999" "trytond-sale>=$version,<$version.999" \
    "trytond-stock>=$version,<$version.999" "proteus>=$version,<$version.999"
  "$venv/bin/python" -c "import trytond, proteus; print('trytond', trytond.__version__)"
  touch "$stamp"
}

cmd_setup() { # <dir> [stock.json]
  local dir="${1:?setup <dir> [stock.json]}"; local stock="${2:-}"
  [ -z "$stock" ] || stock="$(cd "$(dirname "$stock")" && pwd)/$(basename "$stock")"
  [ -x "$venv/bin/trytond-admin" ] || cmd_install
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/.livesync-setup-done" ]; then echo "tryton database already set up in $dir"; return 0; fi
  rm -f "$dir/$db.sqlite"
  write_conf "$dir" "${LIVESYNC_TRYTON_PORT:-8000}"
  # A seeded database is cached per stock input (and password) in $home: setting one up takes
  # about 90 s on 2 cores (trytond-admin about 50 s, the data about 40 s), copying it none.
  local customers=() c
  for c in ${LIVESYNC_TRYTON_CUSTOMERS:-}; do customers+=(--customer "$c"); done
  local key; key="$({ [ -n "$stock" ] && cat "$stock" || echo default; echo "$password ${LIVESYNC_TRYTON_CUSTOMERS:-}"; } | sha256sum | cut -c1-16)"
  local seeded="$home/seeded-$version-$key.sqlite" schema="$home/schema-$version.sqlite"
  if [ -f "$seeded" ]; then
    cp "$seeded" "$dir/$db.sqlite"
  else
    if [ -f "$schema" ]; then
      cp "$schema" "$dir/$db.sqlite"
    else
      # Pitfall: the SQLite file must exist before trytond-admin creates the schema in it;
      # --email is needed for the admin user.
      : >"$dir/$db.sqlite"
      TRYTONPASSFILE=<(printf '%s\n' "$password") \
        "$venv/bin/trytond-admin" -c "$dir/trytond.conf" -d "$db" --email admin@livesync.invalid \
          -u sale stock --activate-dependencies >"$dir/admin.log" 2>&1 \
        || { tail -30 "$dir/admin.log" >&2; die "trytond-admin failed (log: $dir/admin.log)"; }
      cp "$dir/$db.sqlite" "$schema.$$" && mv "$schema.$$" "$schema"
    fi
    (cd "$dir" && "$venv/bin/python" "$here/tryton_setup.py" --config "$dir/trytond.conf" --database "$db" ${stock:+--stock "$stock"} "${customers[@]}") \
      || die "setup data failed"
    cp "$dir/$db.sqlite" "$seeded.$$" && mv "$seeded.$$" "$seeded"
  fi
  touch "$dir/.livesync-setup-done"
}

answers() { # <url>: true when trytond answers JSON-RPC
  "$venv/bin/python" - "$1/rpc/" <<'PY' 2>/dev/null
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=b'{"method":"common.server.version","params":[],"id":0}',
                             headers={'Content-Type': 'application/json'})
sys.exit(0 if 'result' in json.load(urllib.request.urlopen(req, timeout=2)) else 1)
PY
}

cmd_start() { # <dir> [port]
  local dir="${1:?start <dir> [port]}"; local port="${2:-8000}"
  [ -f "$dir/.livesync-setup-done" ] || cmd_setup "$dir"
  dir="$(cd "$dir" && pwd)"
  local url="http://127.0.0.1:$port"
  if [ -f "$dir/trytond.pid" ] && kill -0 "$(cat "$dir/trytond.pid")" 2>/dev/null; then
    if answers "$url"; then echo "url=$url database=$db login=$login password=$password pid=$(cat "$dir/trytond.pid")"; return 0; fi
    cmd_stop "$dir"
  fi
  write_conf "$dir" "$port"
  # Pitfall: trytond needs -d <db> to serve the database.
  # INFO logs one line per RPC call ("sale.sale.create(...) from admin@... in N ms"): tests count calls.
  # The python wrapper closes inherited descriptors first: a caller's process monitor (Foundation's
  # Process on Linux watches a socketpair end its child inherits) must not be held open by trytond.
  TRYTOND_LOGGING_LEVEL="${TRYTOND_LOGGING_LEVEL:-20}" nohup "$venv/bin/python" -c \
    'import os, sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])' "$venv/bin/trytond" -c "$dir/trytond.conf" -d "$db" >"$dir/trytond.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/trytond.pid"
  local deadline=$((SECONDS + ${LIVESYNC_TRYTON_START_TIMEOUT:-60}))
  until answers "$url"; do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$dir/trytond.log" >&2; rm -f "$dir/trytond.pid"; die "trytond exited (log: $dir/trytond.log)"; }
    [ $SECONDS -lt $deadline ] || { kill "$pid" 2>/dev/null || true; rm -f "$dir/trytond.pid"; die "trytond did not answer on $url in time (log: $dir/trytond.log)"; }
    sleep 0.2
  done
  echo "url=$url database=$db login=$login password=$password pid=$pid"
}

cmd_stop() { # <dir>
  local dir="${1:?stop <dir>}"
  local pidfile="$dir/trytond.pid"
  [ -f "$pidfile" ] || { echo "tryton not running in $dir"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "tryton stopped ($pid)"
}

cmd_status() {
  local dir="${1:?status <dir>}"
  [ -f "$dir/trytond.pid" ] && kill -0 "$(cat "$dir/trytond.pid")" 2>/dev/null || { echo "not running"; return 1; }
  grep -o 'listen = .*' "$dir/trytond.conf" | sed "s|listen = \(.*\)|url=http://\1 database=$db login=$login password=$password pid=$(cat "$dir/trytond.pid")|"
}

case "${1:-}" in
  install) cmd_install ;;
  setup) shift; cmd_setup "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
