-- The sum of squares 1..10^6 split into four ranges: the seed's
-- Pool(4).starmap example.
--
--   from multiprocessing import Pool
--   def compute_range(start, end):
--       return sum(x ** 2 for x in range(start, end))
--   if __name__ == "__main__":
--       ranges = [(1, 250001), (250001, 500001), (500001, 750001), (750001, 1000001)]
--       with Pool(processes=4) as pool:
--           partial_sums = pool.starmap(compute_range, ranges)
--       total_sum = sum(partial_sums)
--       print(f"1 到 100 万的平方和为:{total_sum}")
--
-- The total, 333333833333500000, needs 59 bits: more than a double holds
-- exactly, so the sums are int64 (LuaJIT's 0LL).  An int64 does not cross
-- VMs, so each range sends its sum as two exact doubles (high and low
-- nine digits) and the caller adds them up in int64 again.
local pool = parx.pool

local function compute_range(start, stop)
  local s = 0LL
  for x = start, stop - 1 do s = s + x * x end -- x * x <= 1e12: exact
  return {tonumber(s / 1000000000), tonumber(s % 1000000000)}
end

local ranges = {{1, 250001}, {250001, 500001}, {500001, 750001}, {750001, 1000001}}
local partial_sums = pool.starmap(compute_range, ranges)
local total_sum = 0LL
for _, p in ipairs(partial_sums) do total_sum = total_sum + p[1] * 1000000000LL + p[2] end
print(("1 到 100 万的平方和为:%s"):format(tostring(total_sum):gsub("LL$", "")))
