-- Run by spec/mpi_spec.lua on 3 ranks: rank 1 fails with an uncaught error
-- while ranks 0 and 2 wait for messages that never come.
local mpi = require "parx.mpi"
if mpi.rank() == 1 then
  parx.sleep(0.3)
  -- when it failed (wall clock: the spec measures the job's end from here,
  -- not from a start-up that a loaded machine may make slow)
  io.stderr:write(("failing at %d\n"):format(os.time()))
  error("rank one gives up")
end
mpi.recv(1, 5)
