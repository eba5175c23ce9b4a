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
--   parx scripts/examples/sum_squares.lua [n]     (n: 10^6 by default)
--
-- 10^6 takes a few milliseconds; `parx --stats --workers 2
-- scripts/examples/sum_squares.lua 5e8` (about a second of work) is long
-- enough for the --stats report's speedup to mean something
-- (scripts/bench/stats_check.sh compares it with the wall times of 1 and 2
-- workers).
--
-- The total needs more bits than a double holds exactly (59 for 10^6, 89
-- for 10^9), so each range sums in 128 bits: two uint64 halves, the carry
-- out of the low one counted in the high one.  A uint64 does not cross
-- VMs, so a range sends its sum as three exact doubles (the high half and
-- the low half's two 32-bit parts) and the caller adds them up again.
local pool = parx.pool

local TWO32 = 4294967296ULL

local function compute_range(start, stop)
  local lo, hi = 0ULL, 0ULL
  for x = start, stop - 1 do
    local s = lo + (x + 0ULL) * x -- x < 2^32: x * x fits 64 bits
    if s < lo then hi = hi + 1 end
    lo = s
  end
  return {tonumber(hi), tonumber(lo / TWO32), tonumber(lo % TWO32)}
end

-- hi * 2^64 + lo in decimal: long division by 10^9 of its four 32-bit limbs.
local function decimal(hi, lo)
  local limbs = {hi / TWO32, hi % TWO32, lo / TWO32, lo % TWO32}
  local parts = {}
  repeat
    local rem, left = 0ULL, false
    for i = 1, 4 do
      local cur = rem * TWO32 + limbs[i]
      limbs[i] = cur / 1000000000ULL
      rem = cur % 1000000000ULL
      left = left or limbs[i] ~= 0
    end
    table.insert(parts, 1, (left and "%09d" or "%d"):format(tonumber(rem)))
  until not left
  return table.concat(parts)
end

local n = math.floor(tonumber(arg and arg[1]) or 1e6)
assert(n >= 4 and n < 2 ^ 32, "n must be from 4 to 2^32 - 1")
local ranges = {}
for i = 0, 3 do ranges[#ranges + 1] = {math.floor(n * i / 4) + 1, math.floor(n * (i + 1) / 4) + 1} end
local partial_sums = pool.starmap(compute_range, ranges)
local lo, hi = 0ULL, 0ULL
for _, p in ipairs(partial_sums) do
  local s = lo + (p[2] * TWO32 + p[3])
  if s < lo then hi = hi + 1 end
  lo, hi = s, hi + p[1]
end
if n == 1e6 then
  print(("1 到 100 万的平方和为:%s"):format(decimal(hi, lo)))
else
  print(("1 到 %d 的平方和为:%s"):format(n, decimal(hi, lo)))
end
