#!/usr/bin/env bash
# gpu.matmul on the CPU path (PARX_GPU=off, host arrays, OpenBLAS on the
# libuv pool, the task parked, the workers started and idle) against
# cblas_sgemm/cblas_dgemm called from C (gpu_cblas.c), each in a process of
# its own with the same environment (OPENBLAS_* included), interleaved:
# every round runs both for every size and dtype, the order alternating.
# Prints a markdown table: GFLOP/s and the ratio parx/C as the median over
# the rounds with min-max, and the machine's load before and after.
#
#   scripts/bench/gpu_cpu.sh [BUILD]
#   ROUNDS=7 CPU_SIZES="1024 2048 4096" CPU_DTYPES="float32 float64"
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-7}
sizes=${CPU_SIZES:-1024 2048 4096}
dtypes=${CPU_DTYPES:-float32 float64}
peer=$build/gpu_cblas_bench
if [ ! -x "$peer" ] || [ "$here/gpu_cblas.c" -nt "$peer" ]; then
  ${CC:-cc} -O2 -std=c11 -Wall -o "$peer" "$here/gpu_cblas.c" -lopenblas
fi
reps() { # timed calls per process: about the same wall time per size
  if [ "$1" -le 1024 ]; then echo 9; elif [ "$1" -le 2048 ]; then echo 5; else echo 3; fi
}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  for n in $sizes; do
    for dt in $dtypes; do
      c() { "$peer" "$dt" "$n" "$(reps "$n")" | sed "s/^/$r /"; }
      p() { PARX_GPU=off "$build/parx" "$here/gpu_cpu.lua" --one "$dt" "$n" "$(reps "$n")" | sed "s/^/$r /"; }
      if ((r % 2)); then c; p; else p; c; fi >> "$tmp"
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
echo "gpu.matmul on the CPU vs cblas_*gemm from C: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs,"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-autodetect}, OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-all}, $rounds interleaved rounds,"
echo "load average before $load0, after $load1. GFLOP/s: median (min-max) of the rounds."
echo
echo "| dtype | N | cblas from C | gpu.matmul | ratio |"
echo "|---|---:|---:|---:|---:|"
awk '
  function stats(list,   v, m, i, j, t) {
    m = split(list, v, " ")
    for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return sprintf("%s (%s-%s)", v[int((m + 1) / 2)], v[1], v[m])
  }
  { key = $3 " " $4; if (!(key in seen)) { seen[key] = 1; order[++k] = key }
    g[$2, key, $1] = $6; if ($2 == "parx") rounds[key] = rounds[key] " " $1 }
  END {
    for (i = 1; i <= k; i++) {
      key = order[i]; split(key, f, " "); split(substr(rounds[key], 2), rs, " ")
      lc = lp = lr = ""
      for (j in rs) { rr = rs[j]; c = g["cblas", key, rr]; p = g["parx", key, rr]
        lc = lc " " c; lp = lp " " p; lr = lr " " sprintf("%.3f", p / c) }
      printf "| %s | %d | %s | %s | %s |\n", f[1], f[2], stats(substr(lc, 2)), stats(substr(lp, 2)), stats(substr(lr, 2))
    }
  }' "$tmp"
