-- array_sum.lua -- sum of a 10,000,000-element float64 parx.array with a
-- JIT-compiled loop over a.data (the C peer is array_sum.c), and the same
-- through the bounds-checked a:get(i) for reference.
-- Prints: array_sum <impl> <best seconds> <sum>
local N = 10000000
local RUNS = 7
local now = parx.now or os.clock

local a = parx.array("float64", N)
local d = a.data
for i = 0, N - 1 do d[i] = (i % 1000) * 0.25 end

local function sum_data(arr)
  local p, s = arr.data, 0
  for i = 0, #arr - 1 do s = s + p[i] end
  return s
end

local function sum_get(arr)
  local s = 0
  for i = 1, #arr do s = s + arr:get(i) end
  return s
end

local function best_of(f)
  local best, s = math.huge, 0
  for _ = 1, RUNS do
    local t0 = now()
    s = f(a)
    local t = now() - t0
    if t < best then best = t end
  end
  return best, s
end

for _, case in ipairs({{"lua-data", sum_data}, {"lua-get", sum_get}}) do
  local t, s = best_of(case[2])
  print(string.format("array_sum %s %.6f %.17g", case[1], t, s))
end
