#!/bin/sh
# all.sh -- `make bench`: every table of README's "Benchmarks" in one run.
#
#   scripts/bench/all.sh [build-dir]        (ROUNDS=3, MPI_ROUNDS=2, BENCH="pool chan ...")
#
# Each round runs every workload once, parx and its peers one after the
# other, and the order flips every round (parx first, then the peers first)
# so that both sides see the same load on a shared machine.  Every program
# prints "key value unit" lines (the medians of its own repetitions after a
# warm-up); this script files them as "round impl key value unit" in
# build/bench/all.txt, and scripts/bench/report.lua turns them into the
# Markdown tables README shows (build/bench/results.md): per row the median
# over rounds and the spread of the per-round ratio (lowest-highest), under
# a line naming the machine.  `make bench-readme` copies the tables into
# README between its "bench:begin" and "bench:end" markers.
#
# Groups (BENCH= picks some): pool chan marshal array timers net startup
# matmul mpi.  A peer whose tool is missing is skipped with a note
# (`make bench-deps` installs them all); a group that fails prints "!!" and
# the run goes on.
set -u
build=${1:-build}
rounds=${ROUNDS:-3}
groups=${BENCH:-"pool chan marshal array timers net startup matmul mpi"}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/bench"
out=$(cd "$build/bench" && pwd)
build=$(cd "$build" && pwd)
parx="$build/parx"
raw="$out/all.txt"
log="$out/all.log"
: > "$raw"
rm -f "$out/mpi_table.md"
: > "$log"
export GOCACHE="${GOCACHE:-$out/gocache}"

have() { command -v "$1" >/dev/null 2>&1; }
note() { printf '%s\n' "$*" >&2; printf '# %s\n' "$*" >> "$raw"; }
want() { case " $groups " in *" $1 "*) return 0 ;; esac; return 1; }

# emit IMPL PREFIX CMD...: run CMD, keep its "key value [unit]" lines as
# "round IMPL PREFIX.key value unit".  Anything else it prints goes to the log.
emit() {
  impl=$1 prefix=$2
  shift 2
  "$@" 2>> "$log" | awk -v r="$round" -v i="$impl" -v p="$prefix" '
    NF >= 2 && $2 ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ {
      k = $1; sub(/^[a-z_]+\./, "", k)      # "parx.map" -> "map"
      print r, i, p "." k, $2, (NF >= 3 ? $3 : "s") }' >> "$raw" ||
    echo "!! $impl $prefix: $*" >&2
}

# Peers built once.
cc=${CC:-cc}
$cc -O2 -pthread -o "$out/pool_spawn" "$here/pool_spawn.c" 2>> "$log"
$cc -O2 -fopenmp -o "$out/pool_pfor" "$here/pool_pfor.c" -lm 2>> "$log"
$cc -O2 -o "$out/array_sum" "$here/array_sum.c" 2>> "$log"
$cc -O2 -std=c11 -o "$out/gpu_cblas" "$here/gpu_cblas.c" -lopenblas 2>> "$log"
gobin=
if have go; then
  for g in pool_bench chan_bench net_echo net_http_server; do
    (cd "$here" && go build -o "$out/${g}_go" "$g.go") 2>> "$log" || note "go build $g failed"
  done
  gobin=1
else
  note "go not found: Go peers skipped (make bench-deps)"
fi
have python3 || note "python3 not found: Python peers skipped"
have node || note "node not found: Node.js peers skipped"
uvpy= # Debian's python3-uvloop may sit beside another python3 on PATH
for p in python3 /usr/bin/python3; do
  have "$p" && "$p" -c 'import uvloop' 2>/dev/null && { uvpy=$p; break; }
done
luv=
have luajit && luajit -e 'require "luv"' 2>/dev/null && luv=1

# ---- the groups: parx side and peer side of each -------------------------

pool_parx() {
  for m in map map1 spawn async pfor; do
    emit parx pool "$parx" --workers 2 "$here/pool_bench.lua" "$m" 3
  done
  emit parx pool "$parx" --workers 1 "$here/pool_bench.lua" cpu 1
  emit parx pool "$parx" --workers 2 "$here/pool_bench.lua" cpu 1
}
pool_peers() {
  if have python3; then
    emit python pool python3 "$here/pool_bench.py" map 2
    emit python pool python3 "$here/pool_bench.py" map1 1
    emit python pool python3 "$here/pool_bench.py" spawn
  fi
  emit pthread pool "$out/pool_spawn"
  emit c pool env OMP_NUM_THREADS=2 OMP_PROC_BIND=false "$out/pool_pfor" 3
  if [ -n "$gobin" ]; then
    emit go pool env GOMAXPROCS=1 "$out/pool_bench_go" cpu 1
    emit go pool env GOMAXPROCS=2 "$out/pool_bench_go" cpu 1
    emit go pool env GOMAXPROCS=2 "$out/pool_bench_go" spawn
  fi
}

chan_parx() { emit parx chan "$parx" "$here/chan_bench.lua" 1000000; }
chan_peers() {
  [ -n "$gobin" ] && emit go chan env GOMAXPROCS=2 "$out/chan_bench_go" 1000000
  have python3 && emit python chan python3 "$here/chan_bench.py" 200000
}

# marshal_bench prints "case step value unit": fold case and step into the key.
marshal_fold() { "$@" | awk '$2 != "bytes" {print $1 "_" $2, $3, $4}'; }
marshal_parx() { emit parx marshal marshal_fold "$parx" "$here/marshal_bench.lua" 1000000; }
marshal_peers() { have python3 && emit python marshal marshal_fold python3 "$here/marshal_bench.py" 1000000; }

array_fold() { "$@" | awk '{print $2, $3, "s"}'; }
array_parx() { emit parx array array_fold "$parx" "$here/array_sum.lua"; }
array_peers() { emit c array array_fold "$out/array_sum"; }

# timers print "variant seconds peak_kb": two keys each.
timers_fold() { "$@" | awk '{print $1, $2, "s"; print $1 "_peak", $3 * 1024, "B"}'; }
timers_parx() {
  for v in callback sleep; do emit parx timers timers_fold "$parx" "$here/timers.lua" $v 100000; done
}
timers_peers() {
  for v in callback sleep; do
    have node && emit node timers timers_fold node "$here/timers.js" $v 100000
    have python3 && emit asyncio timers timers_fold python3 "$here/timers.py" $v 100000
  done
}

# TCP echo, 50 connections, 64-byte messages, 2 s each (round trips/s);
# 200 concurrent HTTP GETs x 10 against Go's server (requests/s).
echo_fold() { "$@" | awk '{print "echo", $1, "round_trips/s"}'; }
http_fold() { "$@" | awk '{print "http", $1, "requests/s"}'; }
secs=${SECS:-2}
net_parx() {
  emit parx net echo_fold "$parx" "$here/net_echo.lua" 50 "$secs" 64
  emit parx_all net echo_fold "$parx" "$here/net_echo.lua" 50 "$secs" 64 workers
  [ -n "$url" ] && emit parx net http_fold "$parx" "$here/net_http.lua" "$url" 200 10
}
net_peers() {
  have node && emit node net echo_fold node "$here/net_echo.js" 50 "$secs" 64
  have python3 && emit asyncio net echo_fold python3 "$here/net_echo.py" 50 "$secs" 64
  [ -n "$uvpy" ] && emit uvloop net echo_fold "$uvpy" "$here/net_echo.py" 50 "$secs" 64 --uvloop
  [ -n "$luv" ] && emit luv net echo_fold luajit "$here/net_echo_luv.lua" 50 "$secs" 64
  if [ -n "$gobin" ]; then
    emit go1 net echo_fold env GOMAXPROCS=1 "$out/net_echo_go" 50 "$secs" 64
    emit go net echo_fold "$out/net_echo_go" 50 "$secs" 64
  fi
  if [ -n "$url" ]; then
    have python3 && emit asyncio net http_fold python3 "$here/net_http.py" "$url" 200 10
    have node && emit node net http_fold node "$here/net_http.js" "$url" 200 10
  fi
}

# Start-up: CPU time of an empty run, `perf stat` when it is there.
startup_one() { # CMD...: "empty seconds"
  if have perf; then
    perf stat -x, -e task-clock -r 50 "$@" 2>&1 >/dev/null |
      awk -F, '$3 == "task-clock" || $3 ~ /task-clock/ {print "empty", $1 / 1e3, "s"}'
  else
    t0=$(date +%s%N); i=0
    while [ $i -lt 50 ]; do "$@" >/dev/null; i=$((i + 1)); done
    t1=$(date +%s%N)
    echo "empty $(( (t1 - t0) / 50 ))e-9 s"
  fi
}
startup_parx() { emit parx startup startup_one "$parx" -e ''; }
startup_peers() { have luajit && emit luajit startup startup_one luajit -e ''; }

# CPU matmul: gpu.matmul on host arrays (OpenBLAS on the thread pool, the
# task parked, the workers idle) against cblas_?gemm called from C, each in
# a process of its own (gpu_cblas.c, gpu_cpu.lua --one: "impl dtype n
# seconds GFLOP/s cpu-seconds" per call, the median of its timed calls).
matmul_fold() { "$@" | awk '{print $2 "_" $3, $4, "s"}'; }
matmul_reps() { if [ "$1" -le 1024 ]; then echo 5; elif [ "$1" -le 2048 ]; then echo 3; else echo 1; fi; }
matmul_parx() {
  for n in 1024 2048 4096; do for dt in float32 float64; do
    emit parx matmul matmul_fold env PARX_GPU=off "$parx" "$here/gpu_cpu.lua" --one $dt $n "$(matmul_reps $n)"
  done; done
}
matmul_peers() {
  for n in 1024 2048 4096; do for dt in float32 float64; do
    emit cblas matmul matmul_fold "$out/gpu_cblas" $dt $n "$(matmul_reps $n)"
  done; done
}

# MPI: scripts/bench/mpi.sh prints its own "impl key value unit" rows and
# interleaves its own rounds, once (about 3.5 minutes a round on 2 cores):
# MPI_ROUNDS (default 2) of them keep the whole run near 10 minutes.
mpi_parx() {
  [ "$round" = 1 ] || return 0
  if have mpiexec; then
    # its table as it prints it (machine, medians, spreads, ratios):
    # report.lua adds it as the MPI section
    ROUNDS=${MPI_ROUNDS:-2} sh "$here/mpi.sh" "$build" 2>> "$log" > "$out/mpi_table.md"
  else
    note "mpiexec not found: MPI benchmarks skipped"
  fi
}
mpi_peers() { :; }

# ---- the run ---------------------------------------------------------------

url=
if want net && [ -n "$gobin" ]; then
  "$out/net_http_server_go" > "$out/http.port" 2>> "$log" &
  server=$!
  trap 'kill $server 2>/dev/null' EXIT INT TERM
  for _ in $(seq 50); do [ -s "$out/http.port" ] && break; sleep 0.1; done
  [ -s "$out/http.port" ] && url="http://127.0.0.1:$(head -1 "$out/http.port")/"
fi

{
  echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
  echo "# versions: $(luajit -v 2>/dev/null | cut -d' ' -f1-2)$(have go && echo ", $(go version | cut -d' ' -f3)")$(have python3 && echo ", Python $(python3 -c 'import sys; print(sys.version.split()[0])')")$(have node && echo ", Node.js $(node --version)"), gcc $($cc -dumpversion)"
  echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); rounds: $rounds; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >> "$raw"

t0=$(date +%s)
round=1
while [ "$round" -le "$rounds" ]; do
  for g in $groups; do
    printf 'round %s of %s: %s\n' "$round" "$rounds" "$g" >&2
    if [ $((round % 2)) = 1 ]; then "${g}_parx"; "${g}_peers"; else "${g}_peers"; "${g}_parx"; fi
  done
  round=$((round + 1))
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg); took $(( $(date +%s) - t0 )) s" >> "$raw"

"$parx" "$here/report.lua" "$raw" "$out/mpi_table.md" > "$out/results.md"
cat "$out/results.md"
echo "(written to $out/results.md; raw figures in $raw)" >&2
