-- histogram.lua -- a parallel histogram into a shared array with atomics.
--
-- Python would reach for multiprocessing.Array('i', 10) and a Lock around
-- every increment.  In parx the bins are one parx.array that every worker
-- sees by reference, and each increment is an atomic add on its element:
-- no lock, no copies, no pickling.  A parx.atomic counts the samples.
--
--   parx scripts/examples/histogram.lua [samples] [tasks]
local N = tonumber(arg and arg[1]) or 1000000
local TASKS = tonumber(arg and arg[2]) or 4
local BINS = 10

-- A deterministic sample in [0, 1): the mean of four Park-Miller uniforms
-- (a rough bell curve).  seed -> sample, next seed.
local function sample(seed)
  local s, x = 0, seed
  for _ = 1, 4 do
    x = x * 16807 % 2147483647
    s = s + x / 2147483647
  end
  return s / 4, x
end

local bins = parx.array("int64", BINS)
local counted = parx.atomic(0)

-- Each task fills the bins for its share of the samples.
local function work(first, last, h, total)
  local seed = first * 7919 + 1
  for _ = first, last do
    local v
    v, seed = sample(seed)
    h:atomic_add(math.floor(v * BINS) + 1, 1)
  end
  total:add(last - first + 1)
end

local tasks = {}
local per = math.ceil(N / TASKS)
for t = 1, TASKS do
  local first, last = (t - 1) * per + 1, math.min(t * per, N)
  if first <= last then
    tasks[#tasks + 1] = parx.spawn(work, first, last, bins, counted)
  end
end
for _, t in ipairs(tasks) do t:join() end

-- The same counts, serially, to check the parallel result.
local serial = {}
for b = 1, BINS do serial[b] = 0 end
for t = 1, TASKS do
  local first, last = (t - 1) * per + 1, math.min(t * per, N)
  local seed = first * 7919 + 1
  for _ = first, last do
    local v
    v, seed = sample(seed)
    local b = math.floor(v * BINS) + 1
    serial[b] = serial[b] + 1
  end
end

print(("histogram of %d samples in %d bins, %d tasks"):format(N, BINS, #tasks))
local peak = 0
for b = 1, BINS do peak = math.max(peak, bins:get(b)) end
local same = true
for b = 1, BINS do
  local c = bins:get(b)
  if c ~= serial[b] then same = false end
  print(("[%.1f, %.1f) %8d %s"):format((b - 1) / BINS, b / BINS, c,
                                       ("#"):rep(math.floor(c / peak * 50 + 0.5))))
end
print(("total %d, counted %d, serial check: %s"):format(
  N, counted:get(), same and "ok" or "MISMATCH"))
