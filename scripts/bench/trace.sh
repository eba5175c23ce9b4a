#!/bin/sh
# trace.sh -- what recording costs (issue 12): the channel benchmark and a
# pool.map of 100,000 small items, each run three ways in one run,
# interleaved (the order rotates every round, so all three see the same
# load):
#   none      a build with the recorder compiled out (-DPX_NO_RECORDER:
#             the scheduler's and the channels' hooks are empty)
#   recorder  the normal build: the always-on flight recorder and --stats
#             counters, no trace asked for
#   traced    the normal build with --trace (the JSON written at exit)
# Prints the medians over rounds and each way's speed relative to "none"
# as the median of the per-round ratios with their range (> 1: faster).
#
#   scripts/bench/trace.sh [build] [build-norec]      (ROUNDS=5, N=500000)
#
# make bench-trace builds build-norec first.  Needs an idle machine: on a
# loaded one the spreads are wider than the differences measured.
set -e
build=${1:-build}
norec=${2:-build-norec}
rounds=${ROUNDS:-5}
n=${N:-500000}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# way -> "key value unit" lines
workloads() {
  case $1 in
    none) p="$norec/parx" flag= ;;
    recorder) p="$build/parx" flag= ;;
    traced) p="$build/parx" flag="--trace $tmp/t.json" ;;
  esac
  # shellcheck disable=SC2086  # flag is empty or two words
  "$p" $flag "$here/chan_bench.lua" "$n" |
    awk '$1 == "throughput_buffered1024" || $1 == "throughput_unbuffered" || $1 == "pingpong_median"'
  # shellcheck disable=SC2086
  "$p" $flag --workers 2 "$here/trace_map.lua" 9
}

echo "trace cost: $rounds rounds, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
i=1
while [ "$i" -le "$rounds" ]; do
  case $((i % 3)) in
    1) order="none recorder traced" ;;
    2) order="recorder traced none" ;;
    0) order="traced none recorder" ;;
  esac
  for way in $order; do
    workloads "$way" | sed "s/^/$way $i /" >>"$tmp/results"
  done
  i=$((i + 1))
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

awk -v rounds="$rounds" '
  { v[$1, $3, $2] = $4; unit[$3] = $5; if (!($3 in seen)) { seen[$3] = 1; keys[++nk] = $3 } }
  function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t } }
  function median(a, n) { sort(a, n); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function speed(k, x) { return unit[k] ~ /\/s$/ ? x : 1 / x }
  END {
    printf "%-26s %12s %12s %12s  %-22s %-22s\n", "workload", "none", "recorder", "traced", "recorder/none", "traced/none"
    for (q = 1; q <= nk; q++) {
      k = keys[q]
      for (w = 1; w <= 3; w++) {
        way = w == 1 ? "none" : w == 2 ? "recorder" : "traced"
        n = 0; for (r = 1; r <= rounds; r++) if ((way, k, r) in v) m[++n] = v[way, k, r]
        med[way] = n ? median(m, n) : 0
      }
      for (w = 2; w <= 3; w++) {
        way = w == 2 ? "recorder" : "traced"
        n = 0; lo = 1e99; hi = 0
        for (r = 1; r <= rounds; r++) if ((way, k, r) in v && ("none", k, r) in v && v["none", k, r] > 0) {
          x = speed(k, v[way, k, r]) / speed(k, v["none", k, r]); m[++n] = x
          if (x < lo) lo = x; if (x > hi) hi = x
        }
        cell[way] = n ? sprintf("%.2fx (%.2f-%.2f)", median(m, n), lo, hi) : "-"
      }
      printf "%-26s %12.4g %12.4g %12.4g  %-22s %-22s  %s\n", k, med["none"], med["recorder"], med["traced"], cell["recorder"], cell["traced"], unit[k]
    }
  }' "$tmp/results"
