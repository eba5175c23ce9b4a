#!/usr/bin/env bash
# One large HTTP body (8 MB by default) from Go's net/http on 127.0.0.1:
# parx.http.get (held in resp.body, and streamed to a function sink)
# against curl the command (curl -s -o /dev/null, one process for the
# round's requests, so its start-up is not counted) and Python's urlopen,
# interleaved: every round runs each once, REPS requests after a warm-up,
# the order rotating.  Prints a markdown table: milliseconds per request
# as the median over the rounds of each round's median, with min-max; the
# speed of each against curl; the peak RSS growth in MiB (parx, Python).
#
#   scripts/bench/net_http_big.sh [BUILD]      ROUNDS=7 REPS=9 SIZE=8388608
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/stats.sh"
rounds=${ROUNDS:-7} reps=${REPS:-9} size=${SIZE:-8388608}
have() { command -v "$1" >/dev/null 2>&1; }
if ! have go || ! have curl; then echo "skipped: the large-body HTTP benchmark needs go and curl"; exit 0; fi
mkdir -p "$build/bench"
go build -o "$build/bench/net_http_server" "$here/net_http_server.go"
portfile=$build/bench/net_http_big.port
: > "$portfile"
"$build/bench/net_http_server" > "$portfile" &
server=$!
tmp=$(mktemp)
trap 'kill $server 2>/dev/null; rm -f "$tmp"' EXIT INT TERM
for _ in $(seq 50); do [ -s "$portfile" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(head -1 "$portfile")/bytes/$size"

run_curl() { # the round's requests in one curl process; prints like the others
  local args=()
  for _ in $(seq $((reps + 1))); do args+=(-o /dev/null "$url"); done
  curl -s -w '%{time_total}\n' "${args[@]}" | tail -n "$reps" | sort -n |
    awk -v n="$size" '{ t[NR] = $1 * 1000 } END { printf "curl %.2f %.2f %.2f %d -\n", t[int((NR + 1) / 2)], t[1], t[NR], n }'
}
run_parx() { "$build/parx" "$here/net_http_big.lua" "$url" "$reps"; }
run_sink() { "$build/parx" "$here/net_http_big.lua" "$url" "$reps" sink | sed 's/^parx/parx_sink/'; }
run_py() { if have python3; then python3 "$here/net_http_big.py" "$url" "$reps"; fi; }

load0=$(cut -d' ' -f1-3 /proc/loadavg)
order=(run_curl run_parx run_sink run_py)
for ((r = 0; r < rounds; r++)); do
  for ((i = 0; i < ${#order[@]}; i++)); do
    "${order[(i + r) % ${#order[@]}]}"
  done
done >> "$tmp"
load1=$(cut -d' ' -f1-3 /proc/loadavg)

echo "HTTP GET of one $size-byte body from Go net/http, 127.0.0.1, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')),"
echo "$rounds interleaved rounds of $reps requests, load average before $load0, after $load1."
echo "ms per request: median over the rounds (min-max of the round medians); speed vs curl = curl ms / ms."
echo
echo "| client | ms per request | speed vs curl | peak RSS growth, MiB |"
echo "|---|---:|---:|---:|"
awk "$STATS_AWK"'
  { if (!($1 in ms)) order[++k] = $1; ms[$1] = ms[$1] " " $2; if ($6 != "-") mem[$1] = mem[$1] " " $6 }
  END {
    c = med(ms["curl"])
    names["curl"] = "curl -s -o /dev/null"; names["parx"] = "parx http.get (resp.body)"
    names["parx_sink"] = "parx http.get, sink = function"; names["python"] = "Python urlopen().read()"
    for (i = 1; i <= k; i++) {
      n = order[i]; m = med(ms[n]); l = lo; h = hi
      mm = (n in mem) ? sprintf("%.1f", med(mem[n]) / 1024) : "-"
      printf "| %s | %.2f (%.2f-%.2f) | %.2f | %s |\n", names[n], m, l, h, c / m, mm
    }
  }' "$tmp"
