-- Run by spec/mpi_spec.lua on 3 ranks under `parx --trace`: allreduce of
-- values MPI reduces itself (float64, int32 and int64 arrays, numbers; into
-- opts.out, and in place) and of one it does not (float16, which goes
-- through rank 0).  Rank 0 prints the
-- results; the spec reads rank 1's trace for the waits each one made.
local mpi = require "parx.mpi"
local r = mpi.rank()
local a = parx.array("float64", {100000})
a:fill(r + 1)
local s = mpi.allreduce(a, "sum")
local m = mpi.allreduce(parx.array.from("int32", {r, -r, 7}), "max")
local x = mpi.allreduce(r + 0.5, "prod")
-- opts.out: the result lands in the given array (no new one), or in v
-- itself (in place)
local out = parx.array("float64", {100000})
local o = mpi.allreduce(a, "min", {out = out})
local v = parx.array.from("int64", {r, 10 * r})
local p = mpi.allreduce(v, "sum", {out = v})
parx.trace.mark("generic")
local hout = parx.array("float16", {2})
local h = mpi.allreduce(parx.array.from("float16", {r, 1}), "sum", {out = hout})
local bad = select(2, pcall(mpi.allreduce, a, "sum", {out = parx.array("float32", {100000})}))
if r == 0 then
  print(("out %s %g %g %s"):format(tostring(o == out), out:get(1), out:get(100000), tostring(a:get(1))))
  print(("inplace %s %d %d"):format(tostring(p == v), v:get(1), v:get(2)))
  print(("hout %s"):format(tostring(h == hout)))
  print(bad)
  print(("sum %g %g %d %s"):format(s:get(1), s:get(100000), #s, s:dtype()))
  print(("max %d %d %d %s"):format(m:get(1), m:get(2), m:get(3), m:dtype()))
  print(("prod %g"):format(x))
  print(("half %g %g %s"):format(h:get(1), h:get(2), h:dtype()))
end
