-- Run by spec/mpi_spec.lua on 2 ranks: rank 1 sends a 40 KB value (above
-- OpenMPI's eager limit: it cannot leave before rank 0 receives it) and
-- ends at once; rank 0 receives it a second later.
local mpi = require "parx.mpi"
if mpi.rank() == 1 then
  mpi.send(string.rep("x", 40 * 1024), 0, 3)
else
  parx.sleep(1)
  local v = mpi.recv(1, 3)
  print(#v == 40 * 1024 and "delivered" or "wrong value")
end
