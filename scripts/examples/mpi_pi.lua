-- Monte Carlo estimate of pi over ranks and workers: mpi.map hands chunks
-- of batches to the ranks, each rank runs its chunks on its own workers,
-- and rank 0 adds up the hits.
--
--   mpiexec -n 3 parx scripts/examples/mpi_pi.lua [batches]
local mpi = require "parx.mpi"
local batches, per = tonumber(arg and arg[1]) or 200, 100000

local list = {}
for i = 1, batches do list[i] = i end

local hits = mpi.map(function(seed)
  -- a small LCG per batch: reproducible and independent of the worker
  local x, inside = seed * 2654435761 % 4294967296, 0
  for _ = 1, 100000 do
    x = (1664525 * x + 1013904223) % 4294967296
    local u = x / 4294967296
    x = (1664525 * x + 1013904223) % 4294967296
    local v = x / 4294967296
    if u * u + v * v <= 1 then inside = inside + 1 end
  end
  return inside
end, list)

if mpi.rank() == 0 then
  local total = 0
  for _, h in ipairs(hits) do total = total + h end
  print(("pi ~ %.5f from %d points on %d ranks"):format(4 * total / (batches * per),
    batches * per, mpi.size()))
end
