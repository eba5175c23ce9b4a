-- Run by spec/mpi_spec.lua on 3 ranks: rank 0 passes a number to
-- allreduce, the others an array.  They agree on nothing, so the call takes
-- the way through rank 0, which raises: the job ends, nobody waits.
local mpi = require "parx.mpi"
local v = mpi.rank() == 0 and 1 or parx.array("float64", {4})
mpi.allreduce(v, "sum")
print("not reached on rank " .. mpi.rank())
