-- The sum of squares 1..10^6, split over the ranks and, in each rank, over
-- its workers: each rank takes its own range, `pool.parallel_for`-style
-- chunks of it run on the rank's pool, and allreduce adds the ranks' sums.
--
--   mpiexec -n 3 parx scripts/examples/mpi_sum_squares.lua
--
-- The total, 333333833333500000, needs 59 bits, more than a double holds
-- exactly: sums are int64 inside a rank, and cross ranks as two exact
-- doubles (high and low nine digits), added up again in int64.
local mpi = require "parx.mpi"
local rank, size = mpi.rank(), mpi.size()
local N = 1000000

local lo = math.floor(N * rank / size) + 1
local hi = math.floor(N * (rank + 1) / size)
local pieces = {}
local step = math.ceil((hi - lo + 1) / (4 * parx.pool.size()))
for a = lo, hi, step do pieces[#pieces + 1] = {a, math.min(a + step - 1, hi)} end

local partial = parx.pool.map(function(r)
  local s = 0LL
  for x = r[1], r[2] do s = s + x * x end
  return {tonumber(s / 1000000000), tonumber(s % 1000000000)}
end, pieces)

local hi9, lo9 = 0, 0
for _, p in ipairs(partial) do hi9, lo9 = hi9 + p[1], lo9 + p[2] end
local sums = mpi.gather({hi9, lo9}, 0)
if rank == 0 then
  local total = 0LL
  for _, p in ipairs(sums) do total = total + p[1] * 1000000000LL + p[2] end
  print(("sum of squares 1..%d = %s (%d ranks)"):format(N, tostring(total):gsub("LL$", ""), size))
end
