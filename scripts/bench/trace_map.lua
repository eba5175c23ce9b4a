-- trace_map.lua -- a pool.map of 100,000 small items (x * x), the workload
-- issue 12 sizes the recorder's and the trace's cost on: prints
-- "map_100k <median seconds of REPS maps> s".
--   parx --workers 2 scripts/bench/trace_map.lua [reps]
local reps = tonumber(arg and arg[1]) or 9
local items = {}
for i = 1, 100000 do items[i] = i end
local function square(x) return x * x end
parx.pool.map(square, items) -- warm-up: the workers' JIT and heaps
local ts = {}
for r = 1, reps do
  local t0 = parx.now()
  local out = parx.pool.map(square, items)
  ts[r] = parx.now() - t0
  assert(out[100000] == 1e10)
end
table.sort(ts)
print(string.format("map_100k %.6f s", ts[math.floor((reps + 1) / 2)]))
