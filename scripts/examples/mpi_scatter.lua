-- Scatter, square, gather: the seed's mpi4py example.  Run it with
--
--   mpiexec -n 3 parx scripts/examples/mpi_scatter.lua
--
--   from mpi4py import MPI
--   comm = MPI.COMM_WORLD
--   rank, size = comm.Get_rank(), comm.Get_size()
--   data = [i for i in range(size)] if rank == 0 else None
--   data = comm.scatter(data, root=0)      # one value per rank
--   result = data * data
--   result = comm.gather(result, root=0)   # the list, on rank 0
--   if rank == 0: print(result)
local mpi = require "parx.mpi"
local rank, size = mpi.rank(), mpi.size()

local data
if rank == 0 then
  data = {}
  for i = 0, size - 1 do data[i + 1] = i end
end
data = mpi.scatter(data, 0)
local result = data * data
result = mpi.gather(result, 0)
if rank == 0 then print(table.concat(result, " ")) end
