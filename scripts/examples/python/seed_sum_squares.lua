-- Answers: the seed "Day 6: 多进程编程——释放 Python 的多核潜力", its
-- practice case: the sum of the squares of 1 to 1,000,000, split into four
-- ranges summed by pool.starmap on a Pool(processes=4), printing
-- 1 到 100 万的平方和为:333333833333500000.
--
-- The total (and each range's sum beyond the first) is larger than 2^53, where
-- a Lua number stops being exact: the sums are int64 (0LL), which cross
-- between VMs as themselves.  ("%d" prints one without its LL.)
local function compute_range(first, stop)
  local sum = 0LL
  for x = first, stop - 1 do sum = sum + x * x end
  return sum
end

local ranges = {{1, 250001}, {250001, 500001}, {500001, 750001}, {750001, 1000001}}
local pool = parx.pool.new{workers = 4}
local partial_sums = pool:starmap(compute_range, ranges)
pool:close()
local total_sum = 0LL
for _, s in ipairs(partial_sums) do total_sum = total_sum + s end
print(("1 到 100 万的平方和为:%d"):format(total_sum))
