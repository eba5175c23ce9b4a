#!/usr/bin/env bash
# The GPU benchmark driver (make bench-gpu, make gpu-check):
#  1. the CPU path: gpu.matmul vs OpenBLAS called directly, 2048, float32
#     and float64 (PARX_GPU=off, so it runs on any machine), in one process,
#     then gpu_cpu.sh: against cblas from C in processes of their own,
#     interleaved rounds, as a table with the ratio and its spread;
#  2. with a GPU: gpu.matmul on device arrays vs cuBLAS called directly
#     (build/gpu_cublas_bench), 1024..8192, float32, tf32, bfloat16, as a
#     table with the ratio, then the parked-per-call and host-array paths.
#
#   scripts/bench/gpu_bench.sh [BUILD] [sizes...]
set -euo pipefail
build=${1:-build}
shift || true
parx=$build/parx
here=$(cd "$(dirname "$0")" && pwd)

echo "== CPU path (PARX_GPU=off): gpu.matmul vs direct OpenBLAS"
PARX_GPU=off "$parx" "$here/gpu_cpu.lua" "${CPU_N:-2048}"
echo
"$here/gpu_cpu.sh" "$build"
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
