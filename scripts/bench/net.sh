#!/bin/sh
# net.sh -- the networking benchmarks side by side on 127.0.0.1.
#
# echo: TCP echo round trips, CONNS connections of SIZE-byte messages for
#   SECONDS each; every peer runs its echo server and its clients in one
#   process (one event loop where the runtime has one): parx (one VM, and
#   with the server also listening on every worker VM), Node.js
#   net, Python asyncio (and uvloop where python3-uvloop is installed),
#   LuaJIT + luv (lua-luv), Go net on one core (GOMAXPROCS=1) and on all.
# http: CONC concurrent GETs, PER each, against one Go net/http server:
#   parx.http.get, Python asyncio + a thread pool of urllib, Node.js fetch.
#
# Usage: net.sh [build-dir] [echo|http|all]
#   CONNS=50 SECS=5 SIZE=64 CONC=200 PER=10 to change the sizes.
# Missing peers are skipped with a note (make bench-deps installs them).
set -e
build=${1:-build}
what=${2:-all}
here=$(dirname "$0")
CONNS=${CONNS:-50}
SECS=${SECS:-5}
SIZE=${SIZE:-64}
CONC=${CONC:-200}
PER=${PER:-10}
mkdir -p "$build/bench"
export GOCACHE=${GOCACHE:-/tmp/parx-gocache}
# Python with uvloop: Debian's interpreter has python3-uvloop, a pyenv one may not.
py=python3
uvpy=
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import uvloop' 2>/dev/null; then uvpy=$p; break; fi
done
have() { command -v "$1" >/dev/null 2>&1; }
skip() { echo "  (skipped $1: $2)" >&2; }

ratio_table() { # title unit; reads "name value [extra]" lines, parx first
  awk -v title="$1" -v unit="$2" '
    NR == 1 { base = $2 }
    { name[NR] = $1; val[NR] = $2; extra[NR] = $3 }
    END {
      print title
      printf "  %-40s %14s %10s %10s\n", "implementation", unit, "seconds", "parx/peer"
      for (i = 1; i <= NR; i++) {
        n = name[i]; gsub(/_/, " ", n)
        printf "  %-40s %14d %10s %9.2fx\n", n, val[i], extra[i], base / val[i]
      }
    }'
}

if [ "$what" = echo ] || [ "$what" = all ]; then
  out=$build/bench/net_echo.out
  : > "$out"
  echo "parx_(one_VM) $("$build/parx" "$here/net_echo.lua" "$CONNS" "$SECS" "$SIZE" | cut -d' ' -f1) -" >> "$out"
  echo "parx_(server_on_all_VMs,_clients_main) $("$build/parx" "$here/net_echo.lua" "$CONNS" "$SECS" "$SIZE" workers | cut -d' ' -f1) -" >> "$out"
  if have node; then
    echo "Node.js_net $(node "$here/net_echo.js" "$CONNS" "$SECS" "$SIZE" | cut -d' ' -f1) -" >> "$out"
  else skip "Node.js" "node not found"; fi
  if have $py; then
    echo "Python_asyncio $($py "$here/net_echo.py" "$CONNS" "$SECS" "$SIZE" | cut -d' ' -f1) -" >> "$out"
  else skip "Python" "python3 not found"; fi
  if [ -n "$uvpy" ]; then
    echo "Python_asyncio+uvloop $($uvpy "$here/net_echo.py" "$CONNS" "$SECS" "$SIZE" --uvloop | cut -d' ' -f1) -" >> "$out"
  else skip "uvloop" "python3-uvloop not installed"; fi
  if have luajit && luajit -e 'require "luv"' 2>/dev/null; then
    echo "LuaJIT+luv $(luajit "$here/net_echo_luv.lua" "$CONNS" "$SECS" "$SIZE" | cut -d' ' -f1) -" >> "$out"
  else skip "LuaJIT+luv" "lua-luv not installed"; fi
  if have go && go build -o "$build/bench/net_echo_go" "$here/net_echo.go"; then
    echo "Go_net_(GOMAXPROCS=1) $(GOMAXPROCS=1 "$build/bench/net_echo_go" "$CONNS" "$SECS" "$SIZE" | cut -d' ' -f1) -" >> "$out"
    echo "Go_net_(all_$(nproc)_CPUs) $("$build/bench/net_echo_go" "$CONNS" "$SECS" "$SIZE" | cut -d' ' -f1) -" >> "$out"
  else skip "Go" "go not found"; fi
  ratio_table "TCP echo: $CONNS connections, $SIZE-byte messages, ${SECS} s each, server and clients in one process, 127.0.0.1, $(nproc) CPUs" "round trips/s" < "$out"
  echo
fi

if [ "$what" = http ] || [ "$what" = all ]; then
  if ! have go || ! go build -o "$build/bench/net_http_server" "$here/net_http_server.go"; then
    skip "the HTTP benchmark" "it needs go for its server"; exit 0
  fi
  portfile=$build/bench/net_http.port
  "$build/bench/net_http_server" > "$portfile" &
  server=$!
  trap 'kill $server 2>/dev/null' EXIT INT TERM
  for _ in $(seq 50); do [ -s "$portfile" ] && break; sleep 0.1; done
  url="http://127.0.0.1:$(head -1 "$portfile")/"
  out=$build/bench/net_http.out
  : > "$out"
  "$build/parx" "$here/net_http.lua" "$url" "$CONC" "$PER" | awk '{print "parx_http.get", $1, $2}' >> "$out"
  if have $py; then
    $py "$here/net_http.py" "$url" "$CONC" "$PER" | awk '{print "Python_asyncio+urllib_threads", $1, $2}' >> "$out"
  fi
  if have node; then
    node "$here/net_http.js" "$url" "$CONC" "$PER" | awk '{print "Node.js_fetch", $1, $2}' >> "$out"
  fi
  ratio_table "HTTP: $CONC concurrent GETs x $PER each against Go net/http (1 KiB body), 127.0.0.1, $(nproc) CPUs" "requests/s" < "$out"
fi
