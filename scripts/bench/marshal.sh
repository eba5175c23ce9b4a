#!/bin/sh
# marshal.sh -- the marshaller alone: parx (runtime/core/marshal.c through
# parx.c.debug.bench) against Python's pickle, ns per element, best of 5.
# Usage: marshal.sh [build-dir] [n]
set -e
build=${1:-build}
n=${2:-1000000}
here=$(dirname "$0")
mkdir -p "$build/bench"
tmp=$build/bench/marshal.out
: > "$tmp"
"$build/parx" "$here/marshal_bench.lua" "$n" | sed 's/^/parx /' >> "$tmp"
if command -v python3 >/dev/null 2>&1; then
  python3 "$here/marshal_bench.py" "$n" | sed 's/^/python /' >> "$tmp"
fi
echo "marshal + unmarshal on $(nproc) CPUs (one thread), ns per element, best of 5"
awk '
  { v[$1 " " $2 " " $3] = $4; cases[$2] = 1; order[NR] = $2 }
  END {
    printf "  %-18s %-10s %12s %12s %8s\n", "case", "step", "parx", "pickle", "ratio"
    for (i = 1; i <= NR; i++) {
      c = order[i]; if (c in done) continue; done[c] = 1
      split("marshal unmarshal bytes", steps, " ")
      for (s = 1; s <= 3; s++) {
        k = c " " steps[s]
        if (!(("parx " k) in v)) continue
        p = v["parx " k]; q = (("python " k) in v) ? v["python " k] : ""
        if (q != "" && q > 0) printf "  %-18s %-10s %12.2f %12.2f %7.2fx\n", c, steps[s], p, q, p / q
        else printf "  %-18s %-10s %12.2f %12s %8s\n", c, steps[s], p, "-", "-"
      }
    }
  }' "$tmp"
