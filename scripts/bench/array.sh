#!/bin/sh
# array.sh -- the parx.array benchmark: a JIT loop over a.data against the
# same loop in C at -O2 (goal: within 1.3x).  Usage: array.sh [build-dir]
set -e
build=${1:-build}
here=$(dirname "$0")
mkdir -p "$build/bench"
${CC:-cc} -O2 -o "$build/bench/array_sum" "$here/array_sum.c"
out=$( { "$build/bench/array_sum"; "$build/parx" "$here/array_sum.lua"; } )
echo "$out" | awk '
  { t[$2] = $3; s[$2] = $4; order[++n] = $2 }
  END {
    printf "sum of 10,000,000 float64 (best of 7)\n"
    printf "  %-10s %10s %10s %8s\n", "impl", "ms", "ns/elem", "vs C"
    for (i = 1; i <= n; i++) {
      k = order[i]
      printf "  %-10s %10.2f %10.3f %7.2fx\n", k, t[k] * 1e3, t[k] * 1e9 / 1e7, t[k] / t["c"]
      if (s[k] != s["c"]) printf "  warning: %s sum %s differs from C %s\n", k, s[k], s["c"]
    }
    printf "lua-data / c ratio: %.2f (goal <= 1.3)\n", t["lua-data"] / t["c"]
  }'
