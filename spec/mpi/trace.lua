-- Run by spec/trace_spec.lua on 2 ranks under `parx --trace`: rank 1 waits
-- in a receive from rank 0 (tag 5), which marks the moment and sends after
-- 0.2 s.
local mpi = require "parx.mpi"
if mpi.rank() == 0 then
  parx.sleep(0.2)
  parx.trace.mark("sending")
  mpi.send("hi", 1, 5)
else
  assert(mpi.recv(0, 5) == "hi")
end
