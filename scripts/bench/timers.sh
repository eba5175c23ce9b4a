#!/bin/sh
# timers.sh -- 100,000 timers of 0..10 ms in one event loop: parx against
# Node.js and Python asyncio, best of RUNS (default 3) each.  Two shapes:
#   callback: parx.timer(d, fn) / setTimeout(fn, d) / loop.call_later(d, fn)
#   sleep:    a task per timer that sleeps: parx.async + parx.sleep /
#             async function awaiting a setTimeout promise / asyncio.sleep
# Time is from the first timer started to the last one fired; memory is the
# process's peak RSS (VmHWM), runtime included.
# Usage: timers.sh [build-dir]     (N=100000 RUNS=3 to change)
set -e
build=${1:-build}
here=$(dirname "$0")
N=${N:-100000}
RUNS=${RUNS:-3}
out=$(
  for v in callback sleep; do
    for r in $(seq "$RUNS"); do
      echo "parx $("$build/parx" "$here/timers.lua" $v "$N")"
      if command -v node >/dev/null; then echo "node $(node "$here/timers.js" $v "$N")"; fi
      if command -v python3 >/dev/null; then echo "asyncio $(python3 "$here/timers.py" $v "$N")"; fi
    done
  done
)
echo "$out" | awk -v n="$N" '
  {
    k = $1 SUBSEP $2
    if (!(k in t) || $3 < t[k]) t[k] = $3
    if (!(k in m) || $4 < m[k]) m[k] = $4
    if (!seen[$1]++) impl[++ni] = $1
    if (!vseen[$2]++) var[++nv] = $2
  }
  END {
    printf "%d timers of 0..10 ms (best of runs; time to the last firing, peak RSS)\n", n
    printf "  %-9s %-9s %10s %10s %12s %12s\n", "impl", "shape", "ms", "peak MB", "time/parx", "mem/parx"
    for (j = 1; j <= nv; j++) for (i = 1; i <= ni; i++) {
      k = impl[i] SUBSEP var[j]; p = "parx" SUBSEP var[j]
      if (!(k in t)) continue
      printf "  %-9s %-9s %10.1f %10.1f %11.2fx %11.2fx\n", impl[i], var[j], t[k] * 1e3,
        m[k] / 1024, t[k] / t[p], m[k] / m[p]
    }
  }'
