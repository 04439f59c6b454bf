#!/usr/bin/env bash
# A/B of a `livesync` command between two builds, run alternately (A B A B …) so that a drift
# in the machine's speed hits both: each run's whole-process CPU (user + sys of the command and
# every child it reaped: broker, LiveSync executables, load generator), wall time and peak RSS
# from /usr/bin/time, its JSON summary, and the medians and the A/B CPU ratio per pair.
#
#   scripts/perf-ab.sh A_BIN_DIR B_BIN_DIR RUNS -- demo --orders 100000 --json
#   scripts/perf-ab.sh .build/release /tmp/before/.build/release 3 -- bench stock --lines 600000 --json
#
# Build B from an earlier commit with: git worktree add /tmp/before <commit> &&
#   (cd /tmp/before && swift build -c release). Every run gets its own --data-dir when the
# command takes one (demo, chaos).
set -euo pipefail
[ $# -ge 4 ] && [ "$4" = "--" ] || { echo "usage: $0 A_BIN_DIR B_BIN_DIR RUNS -- COMMAND ARGS..." >&2; exit 2; }
a="$1"; b="$2"; runs="$3"; shift 4
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
out="$(mktemp -d /tmp/livesync-perf-ab.XXXXXX)"
takes_dir=0; case "$1" in demo|chaos) takes_dir=1;; esac
for i in $(seq 1 "$runs"); do
  for side in A B; do
    bin="$a"; [ "$side" = B ] && bin="$b"
    extra=(); [ $takes_dir = 1 ] && extra=(--data-dir "$out/$side-$i")
    /usr/bin/time -f '%U %S %e %M' -o "$out/$side-$i.time" "$bin/livesync" "$@" "${extra[@]}" >"$out/$side-$i.out" 2>"$out/$side-$i.err" || true
    echo "$side run $i: $(cat "$out/$side-$i.time") (user s, sys s, wall s, peak KiB) $(grep '^{' "$out/$side-$i.out" | tail -1 | cut -c1-300)"
  done
done
python3 - "$out" "$runs" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def load(side, i):
    u, s, e, m = open(f"{out}/{side}-{i}.time").read().split()[-4:]
    js = [l for l in open(f"{out}/{side}-{i}.out") if l.startswith("{")]
    return float(u) + float(s), float(e), int(m) // 1024, json.loads(js[-1]) if js else {}
rows = {side: [load(side, i) for i in range(1, runs + 1)] for side in "AB"}
for side in "AB":
    r = rows[side]
    print(f"{side}: CPU s median {statistics.median(x[0] for x in r):.1f}, wall s median {statistics.median(x[1] for x in r):.1f}, peak MiB (largest process) {max(x[2] for x in r)}")
    for key in ("orders_per_sec", "p99_ms", "lines_per_sec", "lost", "oversold"):
        vals = [x[3][key] for x in r if key in x[3]]
        if vals: print(f"   {key}: median {statistics.median(vals)} ({', '.join(str(v) for v in vals)})")
ratios = [a[0] / b[0] for a, b in zip(rows["A"], rows["B"])]
print(f"A/B CPU per pair: {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")
PY
echo "runs kept in $out"
