#!/bin/sh
# versus.sh -- parx against an earlier parx: every parx-side workload of the
# README's benchmark tables, run by two builds side by side in one run,
# interleaved (old, new; then new, old; ...) so both see the same load, and
# printed as the new build's speed relative to the old one with the spread
# over rounds.  What a change must pass before it lands ("no benchmark gets
# more than 5% slower").
#
#   scripts/bench/versus.sh OLD_BUILD NEW_BUILD      (ROUNDS=5, ONLY="chan pool")
#
# Build the old one from a worktree, e.g.
#   git worktree add /tmp/parx-old <commit> && make -C /tmp/parx-old
#   scripts/bench/versus.sh /tmp/parx-old/build build
#
# Workloads: pool (map, map chunksize=1, CPU-bound map, spawn/async+join,
# parallel_for), chan (throughput, ping-pong, select), marshal, array (a.data
# loop), timers, tcp echo, start-up.  Each prints "key value unit" lines; a
# unit ending in "/s" is better when higher, every other unit when lower.
set -e
old=${1:?usage: versus.sh OLD_BUILD NEW_BUILD}
new=${2:?usage: versus.sh OLD_BUILD NEW_BUILD}
rounds=${ROUNDS:-5}
only=${ONLY:-"pool chan marshal array timers tcp startup"}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

want() { case " $only " in *" $1 "*) return 0 ;; esac; return 1; }

# workloads BUILD: "key value unit" lines on stdout.
workloads() {
  p="$1/parx"
  if want pool; then
    for m in map map1 spawn async pfor pfor2; do
      "$p" --workers 2 "$here/pool_bench.lua" "$m" 3 2>/dev/null | awk '{print "pool." substr($1, 6), $2, "s"}'
    done
    "$p" --workers 2 "$here/pool_bench.lua" cpu 1 | awk '$1 ~ /cpu_w/ {print "pool.cpu_w2", $2, "s"}'
  fi
  if want chan; then
    "$p" "$here/chan_bench.lua" 500000 | awk '{print "chan." $1, $2, $3}'
  fi
  if want marshal; then
    "$p" "$here/marshal_bench.lua" 200000 | awk '$2 != "bytes" {print "marshal." $1 "." $2, $3, $4}'
  fi
  if want array; then
    "$p" "$here/array_sum.lua" | awk '{print "array." $2, $3, "s"}'
  fi
  if want timers; then
    for v in callback sleep; do
      "$p" "$here/timers.lua" "$v" 100000 | awk '{print "timers." $1, $2, "s"}'
    done
  fi
  if want tcp; then
    "$p" "$here/net_echo.lua" 50 2 64 | awk '{print "tcp.echo", $1, "round_trips/s"}'
  fi
  if want startup; then
    t0=$(date +%s%N)
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do "$p" -e '' ; done
    t1=$(date +%s%N)
    echo "startup.empty $(( (t1 - t0) / 20000 )) us"
  fi
}

i=1
while [ "$i" -le "$rounds" ]; do
  echo "round $i of $rounds" >&2
  if [ $((i % 2)) -eq 1 ]; then first=old; else first=new; fi
  for which in $first $( [ $first = old ] && echo new || echo old ); do
    eval "dir=\$$which"
    workloads "$dir" | sed "s/^/$which $i /" >> "$out/results"
  done
  i=$((i + 1))
done

# speed ratio per round: new over old in speed terms (> 1: new is faster).
awk -v rounds="$rounds" '
  { v[$1, $3, $2] = $4; unit[$3] = $5; if (!($3 in seen)) { seen[$3] = 1; keys[++nk] = $3 } }
  function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t } }
  function median(a, n) { sort(a, n); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  END {
    printf "%-34s %14s %14s %-10s %8s %17s\n", "measure", "old (median)", "new (median)", "unit", "new/old", "spread (min-max)"
    worst = 1e9
    for (k = 1; k <= nk; k++) {
      key = keys[k]; n = 0; no = 0; nn = 0
      higher = unit[key] ~ /\/s$/
      for (r = 1; r <= rounds; r++) {
        if (!(("old", key, r) in v) || !(("new", key, r) in v)) continue
        o = v["old", key, r]; w = v["new", key, r]
        if (o <= 0 || w <= 0) continue
        rr[++n] = higher ? w / o : o / w
        ol[++no] = o; nl[++nn] = w
      }
      if (n == 0) continue
      sort(rr, n)
      lo = rr[1]; hi = rr[n]; med = median(rr, n)
      printf "%-34s %14.4g %14.4g %-10s %7.3fx %8.3f-%-8.3f\n", key, median(ol, no), median(nl, nn), unit[key], med, lo, hi
      if (med < worst) { worst = med; wkey = key }
    }
    printf "\nnew/old is speed (> 1: the new build is faster), the median of %d interleaved rounds.\n", rounds
    printf "slowest: %s at %.3fx\n", wkey, worst
  }' "$out/results"
