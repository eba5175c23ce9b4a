-- Run by spec/mpi_spec.lua on 3 ranks under `parx --trace`: allreduce of
-- values MPI reduces itself (float64 and int32 arrays, numbers) and of one
-- it does not (float16, which goes through rank 0).  Rank 0 prints the
-- results; the spec reads rank 1's trace for the waits each one made.
local mpi = require "parx.mpi"
local r = mpi.rank()
local a = parx.array("float64", {100000})
a:fill(r + 1)
local s = mpi.allreduce(a, "sum")
local m = mpi.allreduce(parx.array.from("int32", {r, -r, 7}), "max")
local x = mpi.allreduce(r + 0.5, "prod")
parx.trace.mark("generic")
local h = mpi.allreduce(parx.array.from("float16", {r, 1}), "sum")
if r == 0 then
  print(("sum %g %g %d %s"):format(s:get(1), s:get(100000), #s, s:dtype()))
  print(("max %d %d %d %s"):format(m:get(1), m:get(2), m:get(3), m:dtype()))
  print(("prod %g"):format(x))
  print(("half %g %g %s"):format(h:get(1), h:get(2), h:dtype()))
end
