#!/bin/sh
# chan.sh -- the channel benchmarks side by side: parx against Go channels,
# Python queue.Queue (threads) and multiprocessing.Queue (processes).
# Usage: chan.sh [build-dir] [messages]
set -e
build=${1:-build}
n=${2:-1000000}
here=$(dirname "$0")
mkdir -p "$build/bench"
tmp=$build/bench/chan.out
: > "$tmp"
"$build/parx" "$here/chan_bench.lua" "$n" | sed 's/^/parx /' >> "$tmp"
if command -v go >/dev/null 2>&1; then
  (cd "$here" && GOCACHE=${GOCACHE:-/tmp/parx-gocache} go build -o "$OLDPWD/$build/bench/chan_bench_go" chan_bench.go) &&
    "$build/bench/chan_bench_go" "$n" | sed 's/^/go /' >> "$tmp"
else
  echo "go not found: skipping the Go peer (make bench-deps)" >&2
fi
if command -v python3 >/dev/null 2>&1; then
  python3 "$here/chan_bench.py" "$n" | sed 's/^/python /' >> "$tmp"
fi
echo "channels on $(nproc) CPUs, $n messages (unbuffered and Python: a fifth of that)"
awk '
  { v[$1 " " $2] = $3; u[$2] = $4 }
  function row(label, key, peer, pkey,   r) {
    if (!((peer " " pkey) in v) || !(("parx " key) in v)) return
    r = v["parx " key] / v[peer " " pkey]
    printf "  %-44s %14.2f %-6s %14.2f %-6s %6.2fx\n", label, v["parx " key], u[key], v[peer " " pkey], u[pkey], r
  }
  END {
    printf "  %-44s %21s %21s %7s\n", "measure (parx vs peer)", "parx", "peer", "ratio"
    row("buffered 1024 vs Go buffered 1024", "throughput_buffered1024", "go", "throughput_buffered1024")
    row("buffered 1024 vs Go unbuffered", "throughput_buffered1024", "go", "throughput_unbuffered")
    row("unbuffered vs Go unbuffered", "throughput_unbuffered", "go", "throughput_unbuffered")
    row("short strings, buffered 1024 vs Go", "throughput_buffered1024_str", "go", "throughput_buffered1024_str")
    row("short strings, unbuffered vs Go", "throughput_unbuffered_str", "go", "throughput_unbuffered_str")
    row("unbounded vs Go buffered 1024", "throughput_unbounded", "go", "throughput_buffered1024")
    row("buffered 1024 vs Python queue.Queue", "throughput_buffered1024", "python", "queue_Queue")
    row("buffered 1024 vs multiprocessing.Queue", "throughput_buffered1024", "python", "mp_Queue")
    row("select over 8 channels vs Go select", "select8", "go", "select8")
    row("ping-pong median (lower is better) vs Go", "pingpong_median", "go", "pingpong_median")
    row("ping-pong p99 vs Go", "pingpong_p99", "go", "pingpong_p99")
    row("ping-pong median vs Python threads", "pingpong_median", "python", "queue_Queue_pingpong_median")
    printf "goals: buffered >= 5,000,000 msg/s (parx: %.0f); ping-pong median <= 10 us (parx: %.2f us)\n", v["parx throughput_buffered1024"], v["parx pingpong_median"]
  }' "$tmp"
