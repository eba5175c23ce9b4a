-- report.lua -- the Markdown tables of README's "Benchmarks" from the raw
-- figures of scripts/bench/all.sh ("round impl key value unit" lines, "#"
-- lines naming the machine).
--
--   parx scripts/bench/report.lua build/bench/all.txt > results.md
--
-- Each row compares parx with one peer: the columns are the medians over
-- rounds, then parx's speed relative to the peer's, as the median of the
-- per-round ratios with their lowest and highest ("1.9x (1.7-2.1)"; above
-- 1 parx is faster), then the goal and whether this run met it.  A ratio
-- is taken within a round, where both sides ran back to back, so a load
-- that comes and goes moves both; the spread says how much it moved them.
local path = assert(arg[1], "usage: report.lua all.txt")

local vals, units, header = {}, {}, {}
local rounds = {}
for line in io.lines(path) do
  local note = line:match("^# (.*)")
  if note then
    header[#header + 1] = note
  else
    local r, impl, key, v, unit = line:match("^(%d+) (%S+) (%S+) (%S+) (%S+)")
    v = tonumber(v)
    if v then
      local id = impl .. " " .. key
      vals[id] = vals[id] or {}
      vals[id][tonumber(r)] = v
      units[key] = unit
      rounds[tonumber(r)] = true
    end
  end
end

-- Derived rows: a marshal + unmarshal round trip, per round and impl.
local derived = {}
for id, t in pairs(vals) do
  local impl, case = id:match("^(%S+) (marshal%.[%w_]+)_marshal$")
  local u = impl and vals[impl .. " " .. case .. "_unmarshal"]
  if u then
    local sum = {}
    for r, v in pairs(t) do if u[r] then sum[r] = v + u[r] end end
    derived[impl .. " " .. case .. "_roundtrip"] = sum
    units[case .. "_roundtrip"] = units[case .. "_marshal"]
  end
end
for id, t in pairs(derived) do vals[id] = t end

local function median(t)
  local s = {}
  for _, v in pairs(t) do s[#s + 1] = v end
  if #s == 0 then return nil end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2, s[1], s[n]
end

local function get(impl, key) local t = vals[impl .. " " .. key]; return t and (median(t)) end

-- Higher is better for rates ("msg/s", "requests/s"); lower for the rest.
local function rate(unit) return unit:match("/s$") ~= nil end

-- parx's speed over the peer's, per round, then median and range.
local function ratio(pkey, peer, qkey)
  local a, b = vals["parx " .. pkey], vals[peer .. " " .. (qkey or pkey)]
  if not (a and b) then return nil end
  local hi = rate(units[pkey])
  local rs = {}
  for r, x in pairs(a) do
    local y = b[r]
    if y and x > 0 and y > 0 then rs[#rs + 1] = hi and x / y or y / x end
  end
  return median(rs)
end

local function human(v, unit)
  if not v then return "–" end
  if unit == "s" then
    if v < 1e-6 then return ("%.1f ns"):format(v * 1e9) end
    if v < 1e-3 then return ("%.2f µs"):format(v * 1e6) end
    if v < 1 then return ("%.1f ms"):format(v * 1e3) end
    return ("%.2f s"):format(v)
  elseif unit == "ns/elem" then
    return ("%.1f ns"):format(v)
  elseif unit == "us" then
    return ("%.2f µs"):format(v)
  elseif unit == "B" then
    return ("%.1f MB"):format(v / 1e6)
  elseif unit:match("/s$") then
    if v >= 1e6 then return ("%.2f M %s"):format(v / 1e6, unit) end
    if v >= 1e3 then return ("%.1f k %s"):format(v / 1e3, unit) end
    return ("%.0f %s"):format(v, unit)
  end
  return ("%.4g %s"):format(v, unit)
end

local function fmt_ratio(m, lo, hi)
  if not m then return "–" end
  return ("%.2fx (%.2f–%.2f)"):format(m, lo, hi)
end

local out = {}
local function put(s) out[#out + 1] = s end

-- A table: rows of {label, parx key, peer impl, peer label, peer key, goal}
-- where goal is {text, test(parx value, ratio)}.
local function section(title, intro, rows)
  local any = false
  for _, r in ipairs(rows) do if get("parx", r[2]) then any = true end end
  if not any then return end
  put("#### " .. title)
  put("")
  if intro then put(intro); put("") end
  put("| benchmark | parx | peer | parx speed ÷ peer's (range over rounds) | goal |")
  put("|---|---:|---|---:|---|")
  for _, r in ipairs(rows) do
    local label, pkey, peer, plabel, qkey, goal = r[1], r[2], r[3], r[4], r[5], r[6]
    local pv = get("parx", pkey)
    if pv then
      local unit = units[pkey]
      local qv = peer and get(peer, qkey or pkey)
      local m, lo, hi = nil, nil, nil
      if peer then m, lo, hi = ratio(pkey, peer, qkey) end
      local g = ""
      if goal then
        local ok = goal[2](pv, m)
        g = goal[1] .. (ok == nil and "" or ok and " (met)" or " (not met)")
      end
      put(("| %s | %s | %s | %s | %s |"):format(label, human(pv, unit),
        peer and (plabel .. ": " .. human(qv, units[qkey or pkey])) or "", peer and fmt_ratio(m, lo, hi) or "", g))
    end
  end
  put("")
end

local function at_least(x) return {">= " .. x .. "x", function(_, m) if m then return m >= x end end} end
local function at_most(s, text) return {text, function(v) return v <= s end} end

put("### The whole table, one run")
put("")
put("`make bench` (`scripts/bench/all.sh`, then `report.lua`): every row below")
put("in one run, parx and its peer back to back and the order flipped every")
put("round; values are medians over rounds, the ratio is parx's speed over the")
put("peer's (above 1 parx is faster) as the median of the per-round ratios with")
put("their range.")
put("")
for _, h in ipairs(header) do put("- " .. h) end
put("")

section("Tasks and the pool", "2 workers; peers get 2 processes or threads.", {
  {"`pool.map(x*x)`, 1e6 numbers, per item", "pool.map", "python", "Python `Pool(2).map`", nil, at_least(20)},
  {"`pool.map`, `chunksize=1`, 1e5 items, per item", "pool.map1", "python", "Python `Pool(2).map(chunksize=1)`", nil, at_least(10)},
  {"CPU-bound map, 64 items, 2 workers", "pool.cpu_w2", "go", "Go, 64 goroutines, GOMAXPROCS=2", nil,
    {">= 1.85x the 1-worker speed", function(v) local one = get("parx", "pool.cpu_w1"); if one then return one / v >= 1.85 end end}},
  {"the same, 1 worker", "pool.cpu_w1", "go", "Go, GOMAXPROCS=1", "pool.cpu_w1"},
  {"`parx.spawn(f):join()`, empty f, median", "pool.spawn", "go", "Go `go f()` + channel", nil, at_most(2e-6, "<= 2 µs")},
  {"", "pool.spawn", "pthread", "pthread create+join"},
  {"", "pool.spawn", "python", "Python `threading.Thread` start+join"},
  {"`parx.async(f):join()`, empty f, median", "pool.async", nil, nil, nil, at_most(0.3e-6, "<= 0.3 µs")},
  {"`parallel_for` sum of sqrt(a[i]), 5e7 float64", "pool.pfor", "c", "C -O2 OpenMP, 2 threads", "pool.pfor", at_least(0.7)},
  {"the same loop with 2 accumulators", "pool.pfor2", "c", "C -O2 OpenMP, 2 threads", "pool.pfor", at_least(0.7)},
})

section("Channels", "A producer task and a consumer task on two workers; Go with GOMAXPROCS=2; Python threads.", {
  {"1e6 numbers, buffered channel (cap 1024)", "chan.throughput_buffered1024", "go", "Go buffered (1024)", nil, at_least(0.5)},
  {"", "chan.throughput_buffered1024", "python", "`queue.Queue`", "chan.queue_Queue"},
  {"", "chan.throughput_buffered1024", "python", "`multiprocessing.Queue`", "chan.mp_Queue"},
  {"1e6 numbers, unbounded channel", "chan.throughput_unbounded", "go", "Go buffered (1024)", "chan.throughput_buffered1024"},
  {"rendezvous channel (capacity 0)", "chan.throughput_unbuffered", "go", "Go unbuffered", nil, at_least(0.5)},
  {"ping-pong round trip, two rendezvous channels, median", "chan.pingpong_median", "go", "Go", nil, at_most(1, "<= 1 µs")},
  {"`select` over 8 channels", "chan.select8", "go", "Go `select`", nil, at_least(1)},
})

section("The marshaller and shared arrays", "One thread; Python's `pickle` (what `multiprocessing` sends) is the peer; ns per element.", {
  {"marshal a 1e6-integer table", "marshal.ints_1000000_marshal", "python", "`pickle.dumps`"},
  {"unmarshal it", "marshal.ints_1000000_unmarshal", "python", "`pickle.loads`"},
  {"marshal 10,000-integer chunks (what the pool sends)", "marshal.ints_chunk10000_marshal", "python", "`pickle.dumps`"},
  {"unmarshal them", "marshal.ints_chunk10000_unmarshal", "python", "`pickle.loads`"},
  {"marshal 10,000 short strings", "marshal.strings_10000_marshal", "python", "`pickle.dumps`"},
  {"unmarshal them", "marshal.strings_10000_unmarshal", "python", "`pickle.loads`"},
  {"marshal 10,000 3-field records", "marshal.records_10000_marshal", "python", "`pickle.dumps`"},
  {"unmarshal them", "marshal.records_10000_unmarshal", "python", "`pickle.loads`"},
  {"their round trip", "marshal.records_10000_roundtrip", "python", "`pickle`", nil, at_least(2)},
  {"sum of a 1e7 float64 array, JIT loop over `a.data`", "array.lua-data", "c", "C -O2", "array.c", {"within 1.3x of C", function(_, m) if m then return m >= 1 / 1.3 end end}},
  {"the same through `a:get(i)`", "array.lua-get", "c", "C -O2", "array.c"},
})

section("Timers", "100,000 timers of 0–10 ms: time to the last firing, and peak memory.", {
  {"callbacks (`parx.timer` / `setTimeout` / `call_later`)", "timers.callback", "node", "Node.js", nil, at_least(1)},
  {"", "timers.callback", "asyncio", "Python asyncio"},
  {"peak memory", "timers.callback_peak", "node", "Node.js"},
  {"a task per timer (`parx.async` + `parx.sleep`)", "timers.sleep", "node", "Node.js", nil, at_least(1)},
  {"", "timers.sleep", "asyncio", "Python asyncio"},
  {"peak memory", "timers.sleep_peak", "node", "Node.js"},
})

section("Network", "TCP echo: 50 connections, 64-byte messages, server and clients in one process on 127.0.0.1; HTTP: 200 concurrent GETs x 10 of 1 KiB from Go's `net/http`.", {
  {"TCP echo, one VM", "net.echo", "node", "Node.js `net`", nil, at_least(1)},
  {"", "net.echo", "luv", "LuaJIT + luv", nil, at_least(1)},
  {"", "net.echo", "uvloop", "Python asyncio + uvloop"},
  {"", "net.echo", "asyncio", "Python asyncio"},
  {"", "net.echo", "go1", "Go, GOMAXPROCS=1"},
  {"", "net.echo", "go", "Go, all CPUs"},
  {"HTTP GETs (libcurl multi on the loop)", "net.http", "asyncio", "Python asyncio + `urllib` threads"},
  {"", "net.http", "node", "Node.js `fetch`"},
})

section("Start-up", "CPU time of an empty run (`perf stat -r 50`).", {
  {"`parx -e ''`", "startup.empty", "luajit", "`luajit -e ''`"},
})

do
  local rows = {}
  for _, n in ipairs({1024, 2048, 4096}) do
    for _, dt in ipairs({"float32", "float64"}) do
      rows[#rows + 1] = {("%s, %dx%d"):format(dt, n, n), ("matmul.%s_%d"):format(dt, n), "cblas",
        dt == "float32" and "`cblas_sgemm` from C" or "`cblas_dgemm` from C", nil, at_least(0.95)}
    end
  end
  section("CPU matmul", "`gpu.matmul` on host arrays without a GPU (OpenBLAS on the thread pool, the task parked, the workers idle) against `cblas_?gemm` called from C, each in a process of its own with the same environment; seconds per product.", rows)
end

-- MPI: scripts/bench/mpi.sh's own table (arg[2]), which interleaves its
-- own rounds (all.sh runs it once, MPI_ROUNDS rounds), when the group ran.
do
  local f = arg[2] and io.open(arg[2])
  local text = f and f:read("*a") or ""
  if f then f:close() end
  if text:find("| benchmark |", 1, true) then
    put("#### MPI")
    put("")
    put("`scripts/bench/mpi.sh`: ranks on this machine, the same `mpiexec` flags for every side, its own interleaved rounds.")
    put("")
    put((text:gsub("\n+$", "")))
    put("")
  end
end

io.write(table.concat(out, "\n"), "\n")
