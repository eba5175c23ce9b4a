-- pool_bench.lua -- the parx side of scripts/bench/pool.sh (issue 3).
--
--   parx [--workers N] pool_bench.lua WHAT [reps]
--
-- WHAT: map (x*x over 1e6 numbers), first (the first such map of the
-- process, then the median of the later ones), map1 (chunksize 1 over 1e5), cpu (64
-- items of ~10 ms arithmetic), spawn (spawn+join of an empty function),
-- async (async+join), pfor (parallel_for summing sqrt over 5e7 float64).
-- Prints "parx.WHAT <seconds>" lines: medians of `reps` runs after a warm-up.
local what, reps = arg[1], tonumber(arg[2] or 7)
local pool, now = parx.pool, parx.now

local function median(t)
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

local function timed(fn)
  fn() -- warm-up: workers started, traces compiled
  local ts = {}
  for i = 1, reps do
    local t0 = now()
    fn()
    ts[i] = now() - t0
  end
  return median(ts)
end

local function report(key, v) print(("parx.%s %.9g"):format(key, v)) end

-- The arithmetic of the CPU-bound map: the same loop as pool_bench.go.
CPU_ITERS = 8000000
function cpu_work(seed)
  local s = 0.0
  for i = 1, CPU_ITERS do s = s + math.sqrt(i + seed) end
  return s
end

if what == "map" then
  local xs = {}
  for i = 1, 1000000 do xs[i] = i end
  local sq = function(x) return x * x end
  report("map", timed(function()
    local r = pool.map(sq, xs)
    assert(r[1000000] == 1e12)
  end) / 1e6)
elseif what == "first" then
  -- The first pool.map of a process against the later ones (issue 13:
  -- within 1.5x): no warm-up, workers not started yet.
  local xs = {}
  for i = 1, 1000000 do xs[i] = i end
  local sq = function(x) return x * x end
  local t0 = now()
  assert(pool.map(sq, xs)[1000000] == 1e12)
  local first = now() - t0
  local ts = {}
  for i = 1, reps do
    t0 = now()
    pool.map(sq, xs)
    ts[i] = now() - t0
  end
  report("map_first", first / 1e6)
  report("map_later", median(ts) / 1e6)
elseif what == "map1" then
  local xs = {}
  for i = 1, 100000 do xs[i] = i end
  local sq = function(x) return x * x end
  report("map1", timed(function()
    local r = pool.map(sq, xs, {chunksize = 1})
    assert(r[100000] == 1e10)
  end) / 1e5)
elseif what == "cpu" then
  local items = {}
  for i = 1, 64 do items[i] = i end
  report("cpu_w" .. pool.size(), timed(function()
    local r = pool.map(cpu_work, items, {chunksize = 1})
    assert(#r == 64)
  end))
  report("cpu_item", timed(function() cpu_work(1) end))
elseif what == "spawn" then
  local empty = function() end
  for _ = 1, 200 do parx.spawn(empty):join() end
  local ts = {}
  for i = 1, 3000 do
    local t0 = now()
    parx.spawn(empty):join()
    ts[i] = now() - t0
  end
  report("spawn", median(ts))
elseif what == "async" then
  local empty = function() end
  local async = parx.async
  local ts = {}
  for i = 1, 400 do
    local t0 = now()
    for _ = 1, 100 do async(empty):join() end
    ts[i] = (now() - t0) / 100
  end
  table.remove(ts, 1)
  report("async", median(ts))
elseif what == "pfor" then
  local n = 50000000
  local a = parx.array("float64", {n})
  pool.parallel_for(0, n - 1, function(lo, hi)
    local d = a.data
    for i = lo, hi do d[i] = i * 0.5 end
  end)
  local sqrt = math.sqrt
  local total
  report("pfor", timed(function()
    local parts = pool.parallel_for(0, n - 1, function(lo, hi)
      local d, s = a.data, 0.0
      for i = lo, hi do s = s + sqrt(d[i]) end
      return s
    end)
    total = 0
    for _, p in ipairs(parts) do total = total + p end
  end))
  io.stderr:write(("parx parallel_for sum: %.6e\n"):format(total))
  -- The same sum with two accumulators.  LuaJIT emits `sqrtsd xmm0, [mem]`,
  -- which keeps xmm0's upper half and so waits for the previous sqrt: the
  -- plain loop is bound by sqrt latency, not throughput (gcc breaks the
  -- dependency itself).  Two chains hide it when LuaJIT gives them two
  -- registers, which it does for this exact shape (a pair loop with no
  -- tail statement after it), hence ranges of even length.
  report("pfor2", timed(function()
    local parts = pool.parallel_for(0, n - 1, function(lo, hi)
      local d, s1, s2 = a.data, 0.0, 0.0
      local i = lo
      while i < hi do
        s1 = s1 + sqrt(d[i]); s2 = s2 + sqrt(d[i + 1]); i = i + 2
      end
      return s1 + s2
    end, {chunksize = n / 8})
    total = 0
    for _, p in ipairs(parts) do total = total + p end
  end))
  io.stderr:write(("parx parallel_for sum (2 accumulators): %.6e\n"):format(total))
else
  io.stderr:write("usage: pool_bench.lua map|first|map1|cpu|spawn|async|pfor [reps]\n")
  os.exit(2)
end
