#!/bin/sh
# pool.sh -- issue 3's benchmarks: parx tasks and parx.pool against Python
# multiprocessing/threading, pthreads, Go goroutines and C with OpenMP, in
# one run, printed as a README-ready table with ratios.
#
#   scripts/bench/pool.sh [build-dir]     (make bench runs it)
#
# Every parx number is taken with 2 workers (the peers get 2 processes or
# threads too), except the 1-worker run that the CPU-bound speedup needs.
# Each number is a median of several runs inside one process after a
# warm-up.  REPS=n changes the run count; SKIP="python go" leaves peers out.
set -e
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
reps=${REPS:-7}
skip=${SKIP:-}
out="$build/bench"
mkdir -p "$out"
results="$out/pool_results.txt"
: > "$results"

parx="$build/parx"
has() { case " $skip " in *" $1 "*) return 1 ;; esac; command -v "$2" >/dev/null 2>&1; }
step() { printf '  %s\n' "$1" >&2; }

echo "pool benchmarks ($(nproc) CPUs, $(uname -m)); medians of $reps runs" >&2
${CC:-cc} -O2 -pthread -o "$out/pool_spawn" "$here/pool_spawn.c"
${CC:-cc} -O2 -fopenmp -o "$out/pool_pfor" "$here/pool_pfor.c" -lm

step "parx: pool.map x*x over 1e6"
"$parx" --workers 2 "$here/pool_bench.lua" map "$reps" >> "$results"
step "parx: pool.map chunksize=1 over 1e5"
"$parx" --workers 2 "$here/pool_bench.lua" map1 "$reps" >> "$results"
step "parx: CPU-bound map, 1 and 2 workers"
"$parx" --workers 1 "$here/pool_bench.lua" cpu 3 >> "$results"
"$parx" --workers 2 "$here/pool_bench.lua" cpu 3 >> "$results"
step "parx: spawn+join, async+join"
"$parx" --workers 2 "$here/pool_bench.lua" spawn >> "$results"
"$parx" --workers 2 "$here/pool_bench.lua" async >> "$results"
step "parx: parallel_for sum of sqrt over 5e7 float64"
"$parx" --workers 2 "$here/pool_bench.lua" pfor "$reps" >> "$results"
step "C: pthread create+join; OpenMP sum (2 threads)"
"$out/pool_spawn" >> "$results"
OMP_NUM_THREADS=2 OMP_PROC_BIND=false "$out/pool_pfor" "$reps" >> "$results"
if has python python3; then
  step "Python: multiprocessing.Pool(2).map, threading.Thread"
  python3 "$here/pool_bench.py" map 3 >> "$results"
  python3 "$here/pool_bench.py" map1 3 >> "$results"
  python3 "$here/pool_bench.py" spawn >> "$results"
fi
if has go go; then
  step "Go: goroutines (GOMAXPROCS=2)"
  export GOCACHE="${GOCACHE:-$out/gocache}"
  go build -o "$out/pool_bench_go" "$here/pool_bench.go"
  GOMAXPROCS=1 "$out/pool_bench_go" cpu 3 >> "$results"
  GOMAXPROCS=2 "$out/pool_bench_go" cpu 3 >> "$results"
  GOMAXPROCS=2 "$out/pool_bench_go" spawn >> "$results"
fi
"$parx" "$here/pool_table.lua" "$results"
