#!/bin/sh
# mpi.sh -- issue 11's benchmarks: parx.mpi against C MPI_Send/MPI_Recv and
# mpi4py's MPIPoolExecutor, with the same mpiexec flags, printed as a
# README-ready table with ratios, medians and spreads, and the machine.
#
#   scripts/bench/mpi.sh [build-dir]      (make bench-mpi runs it)
#
#   - array ping-pong between 2 ranks, 1 MB and 64 MB: parx arrays received
#     into one array per side (recv_into: the same buffers as C's) vs a C
#     program's MPI_Send/MPI_Recv of the same bytes (bandwidth = 2 x bytes
#     per round trip); and parx's recv making a new array per message;
#   - a small Lua table {1, 2, 3, "four"} ping-pong vs C with a 32-byte
#     buffer (latency per round trip);
#   - allreduce (sum) of 1M float64 (8 MB) and of a number vs C's
#     MPI_Allreduce (mpi_allreduce.c);
#   - mpi.map of N items of 1 ms and 10 us: 2 ranks x 1 worker vs
#     MPIPoolExecutor.map with 2 worker processes (mpiexec -n 3: its master
#     does not compute), chunksize N/64 (PEER_N items: mpi4py is slow
#     enough on a loaded machine that the full N does not fit);
#   - the root's chunk-serving rate: mpi.map of N empty items, chunksize 1
#     (one chunk out and its result back per item);
#   - weak scaling of mpi.map, items of 10 ms: 1 rank x 1 worker with N
#     items vs 2 ranks x 1 worker with 2N (efficiency = t1 / t2);
#   - what a rank costs while it waits 10 s in recv and while it is idle
#     (CPU seconds of the process per wall second).
# ROUNDS (default 3) rounds, each running every benchmark once (interleaved:
# the machine's load falls on both sides alike); medians, with the spread
# (min-max).  MAP_N (10000), PEER_N (400), WEAK_N (200) set the sizes.
# Needs mpicc and mpiexec (openmpi-bin, libopenmpi-dev) and, for the peer,
# python3-mpi4py (make bench-deps); PYTHON=/usr/bin/python3 by default.
set -e
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-3}
map_n=${MAP_N:-10000}
peer_n=${PEER_N:-400}
weak_n=${WEAK_N:-200}
py=${PYTHON:-/usr/bin/python3}
parx="$build/parx"
mkdir -p "$build/bench"
out=$(cd "$build/bench" && pwd)
results="$out/mpi_results.txt"
: > "$results"
command -v mpicc >/dev/null && command -v mpiexec >/dev/null || {
  echo "mpi.sh: needs mpicc and mpiexec (make deps)" >&2; exit 1; }
mpicc -O2 -o "$out/mpi_pingpong" "$here/mpi_pingpong.c"
mpicc -O2 -o "$out/mpi_allreduce" "$here/mpi_allreduce.c"

flags="--oversubscribe"
[ "$(id -u)" = 0 ] && flags="$flags --allow-run-as-root"
run() { n=$1; shift; timeout 900 mpiexec $flags -n "$n" "$@" >> "$results" || echo "mpi.sh: failed: $*" >&2; }
has_mpi4py=0
"$py" -c "import mpi4py.futures" 2>/dev/null && has_mpi4py=1

cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
machine="$(nproc) CPUs ($cpu), $(uname -m), $(mpiexec --version | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
echo "machine: $machine" >> "$results"
echo "mpi benchmarks: $machine; $rounds rounds, interleaved" >&2
i=1
while [ "$i" -le "$rounds" ]; do
  echo "round $i of $rounds" >&2
  for bytes in 1048576 67108864; do
    r=$([ "$bytes" -gt 1048576 ] && echo 10 || echo 200)
    run 2 "$out/mpi_pingpong" "$bytes" "$r"
    run 2 "$parx" "$here/mpi_bench.lua" pingpong "$bytes" "$r"
    run 2 "$parx" "$here/mpi_bench.lua" pingpong-alloc "$bytes" "$r"
  done
  run 2 "$out/mpi_pingpong" 32 20000
  run 2 "$parx" "$here/mpi_bench.lua" table 20000
  run 2 "$out/mpi_allreduce" 1048576 10
  run 2 "$parx" "$here/mpi_bench.lua" allreduce 1048576 10
  for ms in 1 0.01; do
    n=$map_n
    [ "$ms" = 1 ] || n=$((map_n * 2))
    run 2 "$parx" --workers 1 "$here/mpi_bench.lua" map "$n" "$ms"
    if [ $has_mpi4py = 1 ]; then
      run 3 "$py" -m mpi4py.futures "$here/mpi_map.py" "$peer_n" "$ms" $(( (peer_n + 63) / 64 ))
    fi
  done
  run 2 "$parx" --workers 1 "$here/mpi_bench.lua" map 5000 0 1
  run 1 "$parx" --workers 1 "$here/mpi_bench.lua" map "$weak_n" 10
  run 2 "$parx" --workers 1 "$here/mpi_bench.lua" map $((weak_n * 2)) 10
  run 2 "$parx" "$here/mpi_bench.lua" idle 10
  i=$((i + 1))
done
"$parx" "$here/mpi_table.lua" "$results"
