-- Factorials with a pool: the seed's multiprocessing.Pool(2).map example.
--
--   from multiprocessing import Pool
--   import math
--   def compute_factorial(n):
--       return math.factorial(n)
--   if __name__ == "__main__":
--       numbers = [3, 5, 10]
--       with Pool(processes=2) as pool:
--           results = pool.map(compute_factorial, numbers)
--           print(results)
--       print(results)
--
-- Prints [6, 120, 3628800] twice.  Run: parx --workers 2 scripts/examples/factorials.lua
local pool = parx.pool

local function compute_factorial(n)
  local r = 1
  for i = 2, n do r = r * i end
  return r
end

-- Python's list repr for a list of integers.
local function repr(list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = ("%d"):format(v) end
  return "[" .. table.concat(parts, ", ") .. "]"
end

local numbers = {3, 5, 10}
local results = pool.map(compute_factorial, numbers)
print(repr(results))
print(repr(results))
