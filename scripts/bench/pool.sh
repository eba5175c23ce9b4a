#!/bin/sh
# pool.sh -- issue 3's benchmarks: parx tasks and parx.pool against Python
# multiprocessing/threading, pthreads, Go goroutines and C with OpenMP, in
# one run, printed as a README-ready table with ratios.
#
#   scripts/bench/pool.sh [build-dir]     (make bench runs it)
#
# Every parx number is taken with 2 workers (the peers get 2 processes or
# threads too), except the 1-worker run that the CPU-bound speedup needs.
# Each process reports the median of REPS runs after a warm-up; the whole
# set runs ROUNDS times with parx and its peers interleaved (so both see the
# same load on a shared machine) and the table shows the median per
# measurement.  SKIP="python go" leaves peers out.
set -e
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
reps=${REPS:-5}
rounds=${ROUNDS:-3}
skip=${SKIP:-}
mkdir -p "$build/bench"
out=$(cd "$build/bench" && pwd) # absolute: GOCACHE must be
results="$out/pool_results.txt"
: > "$results"

parx="$build/parx"
has() { case " $skip " in *" $1 "*) return 1 ;; esac; command -v "$2" >/dev/null 2>&1; }
step() { printf '  %s\n' "$1" >&2; }

echo "pool benchmarks ($(nproc) CPUs, $(uname -m)); $rounds rounds, medians" >&2
${CC:-cc} -O2 -pthread -o "$out/pool_spawn" "$here/pool_spawn.c"
${CC:-cc} -O2 -fopenmp -o "$out/pool_pfor" "$here/pool_pfor.c" -lm

round() {
  step "parx: pool.map x*x over 1e6; Python Pool(2).map"
  "$parx" --workers 2 "$here/pool_bench.lua" map "$reps" >> "$results"
  if has python python3; then python3 "$here/pool_bench.py" map 2 >> "$results"; fi
  step "parx: pool.map chunksize=1 over 1e5; Python Pool(2).map(chunksize=1)"
  "$parx" --workers 2 "$here/pool_bench.lua" map1 "$reps" >> "$results"
  if has python python3; then python3 "$here/pool_bench.py" map1 1 >> "$results"; fi
  step "CPU-bound map: parx 1 and 2 workers, Go GOMAXPROCS=1 and 2"
  "$parx" --workers 1 "$here/pool_bench.lua" cpu 1 >> "$results"
  "$parx" --workers 2 "$here/pool_bench.lua" cpu 1 >> "$results"
  if [ -n "$gobin" ]; then
    GOMAXPROCS=1 "$gobin" cpu 1 >> "$results"
    GOMAXPROCS=2 "$gobin" cpu 1 >> "$results"
  fi
  step "spawn+join: parx, pthread, Python threading, Go; async+join"
  "$parx" --workers 2 "$here/pool_bench.lua" spawn >> "$results"
  "$out/pool_spawn" >> "$results"
  if has python python3; then python3 "$here/pool_bench.py" spawn >> "$results"; fi
  if [ -n "$gobin" ]; then GOMAXPROCS=2 "$gobin" spawn >> "$results"; fi
  "$parx" --workers 2 "$here/pool_bench.lua" async >> "$results"
  step "parallel_for sum of sqrt over 5e7 float64: parx; C OpenMP (2 threads)"
  "$parx" --workers 2 "$here/pool_bench.lua" pfor "$reps" >> "$results" 2>/dev/null
  OMP_NUM_THREADS=2 OMP_PROC_BIND=false "$out/pool_pfor" "$reps" >> "$results" 2>/dev/null
}

gobin=
if has go go; then
  export GOCACHE="${GOCACHE:-$out/gocache}"
  go build -o "$out/pool_bench_go" "$here/pool_bench.go" && gobin="$out/pool_bench_go"
fi
i=1
while [ "$i" -le "$rounds" ]; do
  echo "round $i of $rounds" >&2
  round
  i=$((i + 1))
done
"$parx" "$here/pool_table.lua" "$results"
