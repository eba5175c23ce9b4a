-- A short tour of parx: run it with `make demo` or `build/parx scripts/examples/tour.lua`.
-- The global `parx` is there in every script; nothing needs requiring.

local function fact(n)
  local r = 1
  for i = 2, n do r = r * i end
  return r
end

print(("parx %s with %d workers"):format(parx.version, parx.pool.size()))

-- 1. spawn runs a function on a worker VM (real parallelism); join waits
--    for its results.  Top-level helpers like fact travel with the function.
local t = parx.spawn(function(n) return fact(n), "computed on a worker" end, 10)
print("spawn/join:", t:join())

-- 2. pool.map: Pool.map of factorials, results in order.
local facts = parx.pool.map(fact, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
print("pool.map:  ", table.concat(facts, " "))

-- 3. A sum of squares 1..10^5 split into ranges across the workers.
local ranges = {}
local n, step = 100000, 25000
for lo = 1, n, step do ranges[#ranges + 1] = {lo, math.min(lo + step - 1, n)} end
local partial = parx.pool.map(function(r)
  local s = 0
  for i = r[1], r[2] do s = s + i * i end
  return s
end, ranges)
local total = 0
for _, s in ipairs(partial) do total = total + s end
print(("sum of squares 1..10^5 = %.0f"):format(total))

-- 4. Channels: a producer task and a consumer, closed instead of a None
--    sentinel.
local ch = parx.channel(4)
local producer = parx.spawn(function(out)
  for i = 1, 5 do out:send(i * i) end
  out:close()
end, ch)
local got = {}
for v in ch:iter() do got[#got + 1] = v end
producer:join()
print("channel:   ", table.concat(got, " "))

-- 5. async tasks share the main VM; sleep parks only the task, so three
--    0.1 s sleeps overlap.
local t0 = parx.now()
local names = {parx.gather(
  parx.async(function() parx.sleep(0.1) return "a" end),
  parx.async(function() parx.sleep(0.1) return "b" end),
  parx.async(function() parx.sleep(0.1) return "c" end))}
print(("gather:     %s in about %.1f s (not 0.3)"):format(
  table.concat(names, " "), parx.now() - t0))

-- 6. Errors in a task come back where the result is read.
local ok, err = pcall(function()
  return parx.spawn(function() error("bad input") end):join()
end)
print("error:     ", ok, (tostring(err):match("^[^\n]*")))
