#!/usr/bin/env bash
# The GPU benchmark driver (make bench-gpu, make gpu-check):
#  1. the CPU path: gpu.matmul vs OpenBLAS called directly, 2048, float32
#     and float64 (PARX_GPU=off, so it runs on any machine), in one process,
#     then against cblas from C (gpu_cblas.c) in processes of their own,
#     interleaved rounds, as a table with the ratio and its spread (below);
#  2. with a GPU: gpu.matmul on device arrays vs cuBLAS called directly
#     (build/gpu_cublas_bench), 1024..8192, float32, tf32, bfloat16, as a
#     table with the ratio, then the parked-per-call and host-array paths.
#
#   scripts/bench/gpu_bench.sh [BUILD] [sizes...]
#   ROUNDS=7 CPU_SIZES="1024 2048 4096" CPU_DTYPES="float32 float64"
set -euo pipefail
build=${1:-build}
shift || true
parx=$build/parx
here=$(cd "$(dirname "$0")" && pwd)
. "$here/stats.sh"

# gpu.matmul on the CPU path (PARX_GPU=off, host arrays, OpenBLAS on the
# libuv pool, the task parked, the workers started and idle) against
# cblas_sgemm/cblas_dgemm called from C (gpu_cblas.c), each in a process of
# its own with the same environment (OPENBLAS_* included), interleaved:
# every round runs both for every size and dtype, the order alternating.
cpu_table() {
  local rounds=${ROUNDS:-7} sizes=${CPU_SIZES:-1024 2048 4096} dtypes=${CPU_DTYPES:-float32 float64}
  local peer=$build/bench/gpu_cblas tmp load0 load1 r n dt
  if [ ! -x "$peer" ] || [ "$here/gpu_cblas.c" -nt "$peer" ]; then
    mkdir -p "$build/bench"
    ${CC:-cc} -O2 -std=c11 -Wall -o "$peer" "$here/gpu_cblas.c" -lopenblas
  fi
  reps() { # timed calls per process: about the same wall time per size
    if [ "$1" -le 1024 ]; then echo 5; elif [ "$1" -le 2048 ]; then echo 3; else echo 1; fi
  }
  tmp=$(mktemp)
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
  echo "load average before $load0, after $load1. Median (min-max) of the rounds: GFLOP/s of"
  echo "the wall clock, and GFLOP per CPU-second of the whole process (all its threads: what idle"
  echo "workers or a waiting thread burn shows there, whatever else loads the machine)."
  echo
  echo "| dtype | N | cblas from C | gpu.matmul | ratio | cblas GFLOP per CPU-s | gpu.matmul GFLOP per CPU-s | ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  awk "$STATS_AWK"'
    { key = $3 " " $4; if (!(key in seen)) { seen[key] = 1; order[++k] = key }
      g[$2, key, $1] = $6; e[$2, key, $1] = 2 * $4 * $4 * $4 / $7 / 1e9
      if ($2 == "parx") rounds[key] = rounds[key] " " $1 }
    END {
      for (i = 1; i <= k; i++) {
        key = order[i]; split(key, f, " "); split(substr(rounds[key], 2), rs, " ")
        lc = lp = lr = ec = ep = er = ""
        for (j in rs) { rr = rs[j]; c = g["cblas", key, rr]; p = g["parx", key, rr]
          lc = lc " " c; lp = lp " " p; lr = lr " " sprintf("%.3f", p / c)
          c = e["cblas", key, rr]; p = e["parx", key, rr]
          ec = ec " " sprintf("%.1f", c); ep = ep " " sprintf("%.1f", p); er = er " " sprintf("%.3f", p / c) }
        printf "| %s | %d | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], spread(substr(lc, 2)), spread(substr(lp, 2)),
               spread(substr(lr, 2)), spread(substr(ec, 2)), spread(substr(ep, 2)), spread(substr(er, 2))
      }
    }' "$tmp"
  rm -f "$tmp"
}

echo "== CPU path (PARX_GPU=off): gpu.matmul vs direct OpenBLAS"
PARX_GPU=off "$parx" "$here/gpu_cpu.lua" "${CPU_N:-2048}"
echo
cpu_table
echo

if ! "$parx" -e 'os.exit(parx.gpu.available() and 0 or 1)'; then
  echo "== no GPU ($("$parx" -e 'print(select(2, parx.gpu.available()))')): GPU table skipped"
  exit 0
fi
[ -x "$build/gpu_cublas_bench" ] || { echo "missing $build/gpu_cublas_bench (make gpu)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/gpu_cublas_bench" "$@" | tee "$tmp/cublas"
"$parx" "$here/gpu_matmul.lua" "$@" | tee "$tmp/parx"

device=$(grep -m1 '^# device' "$tmp/cublas" | sed 's/^# device //')
echo
echo "gpu.matmul (device arrays) vs cuBLAS on $device, TFLOP/s (median of 5 trials)"
echo
echo "| dtype | N | cuBLAS | gpu.matmul | ratio | gpu.matmul, parked per call | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk '
  FNR == NR && $1 == "cublas" { ref[$2 " " $3] = $5; order[++k] = $2 " " $3; next }
  $1 == "parx" { p[$2 " " $3] = $5 }
  $1 == "parx-sync" { s[$2 " " $3] = $5 }
  END {
    for (i = 1; i <= k; i++) {
      key = order[i]; split(key, f, " ")
      printf "| %s | %d | %.1f | %.1f | %.3f | %.1f | %.3f |\n", f[1], f[2], ref[key], p[key],
             p[key] / ref[key], s[key], s[key] / ref[key]
    }
  }' "$tmp/cublas" "$tmp/parx"
echo
echo "Host arrays in and out (staged through pinned memory), per product:"
echo
echo "| dtype | N | ms | TFLOP/s | of which transfers, ms |"
echo "|---|---:|---:|---:|---:|"
awk '$1 == "parx-host" { printf "| %s | %d | %.1f | %.1f | %.1f |\n", $2, $3, $4, $5, $6 }' "$tmp/parx"
