#!/bin/sh
# stats_check.sh -- does the speedup `parx --stats` reports agree with the
# one the wall clock measures?  Issue 12's check: on the sum-of-squares
# example, the speedup S that --stats prints for a run with 2 workers
# (busy time summed over the VMs / wall time) against T1 / T2, the wall
# times of the same program with 1 and 2 workers, measured in the same
# run; they should agree within 10%.
#
#   scripts/bench/stats_check.sh [build-dir]
#
# ROUNDS (default 7) rounds, each running the 1-worker and the 2-worker
# program back to back (interleaved, so both see the same load on a shared
# machine); N (default 5e8: about a second of work on one worker) is the
# example's n.  Prints each round, then the medians with their spread
# (min..max), the ratio reported / measured, and "agree" or "disagree".
# A timing check, not part of `make test` (spec/stats_report_spec.lua
# checks the report's structure).  It needs cores to itself: busy time
# counts the time a worker waited for a core that another process held, so
# on a loaded machine S (the program's speedup given free cores) runs above
# T1/T2 (what this machine gives now).  The report says for what share of
# their busy time the threads had a core (their CPU time); the script
# prints its median and calls the check inconclusive below 80%.
# Exit status 0: agree within 10%; 1: disagree; 2: inconclusive (loaded).
set -e
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
parx="$build/parx"
example="$here/../examples/sum_squares.lua"
rounds=${ROUNDS:-7}
n=${N:-5e8}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }

# run WORKERS -> "wall S share" (S: the speedup --stats reported; share:
# the % of busy time the threads had a core)
run() {
  t0=$(now)
  "$parx" --workers "$1" --stats "$example" "$n" >"$tmp/out" 2>"$tmp/err"
  t1=$(now)
  s=$(sed -n 's/.*Speedup S = \([0-9.]*\)x.*/\1/p' "$tmp/err" | head -n 1)
  c=$(sed -n 's/.*had a core for \([0-9]*\)%.*/\1/p' "$tmp/err" | head -n 1)
  echo "$t0 $t1 ${s:-0} ${c:-100}" | awk '{ printf "%.4f %s %s\n", $2 - $1, $3, $4 }'
}

echo "stats check: sum_squares.lua $n, $rounds rounds of 1 then 2 workers ($(nproc) CPUs)" >&2
: >"$tmp/rounds"
i=1
while [ "$i" -le "$rounds" ]; do
  set -- $(run 1)
  t1=$1
  set -- $(run 2)
  t2=$1 s=$2 c=$3
  printf '  round %d: T1 %.3f s  T2 %.3f s  measured T1/T2 %.3f  reported S %s  (cores had %s%%)\n' \
    "$i" "$t1" "$t2" "$(echo "$t1 $t2" | awk '{ print $1 / $2 }')" "$s" "$c" >&2
  echo "$t1 $t2 $s $c" >>"$tmp/rounds"
  i=$((i + 1))
done

# Medians and spreads (min..max) of T1, T2, T1/T2 (per round) and S.
awk '
function median(a, n,   i, j, t) {
  for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function span(a, n,   i, lo, hi) {
  lo = hi = a[1]
  for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
  return sprintf("%.3f..%.3f", lo, hi)
}
{ n++; t1[n] = $1; t2[n] = $2; m[n] = $1 / $2; s[n] = $3; c[n] = $4 }
END {
  st1 = span(t1, n); st2 = span(t2, n); sm = span(m, n); ss = span(s, n); sc = span(c, n)
  mt1 = median(t1, n); mt2 = median(t2, n); mm = median(m, n); ms = median(s, n); mc = median(c, n)
  ratio = ms / mm
  printf "T1 (1 worker)        median %.3f s  (%s)\n", mt1, st1
  printf "T2 (2 workers)       median %.3f s  (%s)\n", mt2, st2
  printf "measured T1/T2       median %.3f    (%s)\n", mm, sm
  printf "reported S (--stats) median %.3f    (%s)\n", ms, ss
  printf "had a core (2 workers) median %.0f%%     (%s)\n", mc, sc
  agree = ratio >= 0.9 && ratio <= 1.1
  if (!agree && mc < 80) {
    printf "reported / measured  %.3f: inconclusive: the threads had a core only %.0f%% of their busy time\n", ratio, mc
    exit 2
  }
  printf "reported / measured  %.3f: %s within 10%%\n", ratio, agree ? "agree" : "disagree"
  exit agree ? 0 : 1
}' "$tmp/rounds"
