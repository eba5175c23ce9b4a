-- mpi_bench.lua -- the parx side of scripts/bench/mpi.sh.
--
--   mpiexec -n 2 parx mpi_bench.lua pingpong BYTES ROUNDS   array ping-pong (recv_into)
--   mpiexec -n 2 parx mpi_bench.lua pingpong-alloc BYTES ROUNDS  (recv: a new array each)
--   mpiexec -n 2 parx mpi_bench.lua allreduce N ROUNDS     allreduce of N float64, of a number
--   mpiexec -n 2 parx mpi_bench.lua table ROUNDS            small-table ping-pong
--   mpiexec -n R parx --workers 1 mpi_bench.lua map N MS [CHUNK]  mpi.map of N busy items
--   mpiexec -n 2 parx mpi_bench.lua idle SECONDS            CPU of a rank waiting
--
-- Rank 0 prints one line: "parx WHAT seconds..." (the driver makes the table).
local mpi = require "parx.mpi"
local mode = arg[1]
local rank = mpi.rank()
local peer = 1 - rank

-- recv(v): the next message (into v when given an array to fill)
local function pingpong(v, rounds, recv)
  recv = recv or function() return mpi.recv(peer, 1) end
  for warm = 0, 1 do
    local n = warm == 1 and rounds or math.max(1, math.floor(rounds / 10))
    mpi.barrier()
    local t0 = parx.now()
    for _ = 1, n do
      if rank == 0 then
        mpi.send(v, peer, 1)
        v = recv(v)
      elseif rank == 1 then
        v = recv(v)
        mpi.send(v, peer, 1)
      end
    end
    if warm == 1 then return (parx.now() - t0) / n end
  end
end

if mode == "pingpong" or mode == "pingpong-alloc" then
  -- pingpong: one array each side, received into (as the C peer does);
  -- pingpong-alloc: every recv makes a new array.
  local bytes, rounds = tonumber(arg[2]), tonumber(arg[3])
  local a = parx.array("uint8", {bytes})
  a:fill(1)
  local t = pingpong(a, rounds, mode == "pingpong" and function(v) return (mpi.recv_into(v, peer, 1)) end)
  if rank == 0 then print(("parx%s %d %.9f"):format(mode == "pingpong" and "" or "-alloc", bytes, t)) end
elseif mode == "allreduce" then
  -- allreduce (sum) of N float64 into one result array (opts.out: C's
  -- recvbuf), and of a number, as mpi_allreduce.c
  local n, rounds = tonumber(arg[2]), tonumber(arg[3])
  local a, out = parx.array("float64", {n}), parx.array("float64", {n})
  a:fill(rank + 1)
  mpi.allreduce(a, "sum", {out = out}) -- warm-up
  mpi.barrier()
  local t0 = parx.now()
  for _ = 1, rounds do mpi.allreduce(a, "sum", {out = out}) end
  local ta = (parx.now() - t0) / rounds
  mpi.barrier()
  t0 = parx.now()
  for _ = 1, 10 * rounds do mpi.allreduce(rank, "sum") end
  local ts = (parx.now() - t0) / (10 * rounds)
  if rank == 0 then print(("parx allreduce %d %.9f\nparx allreduce 1 %.9f"):format(n, ta, ts)) end
elseif mode == "table" then
  local t = pingpong({1, 2, 3, "four"}, tonumber(arg[2]))
  if rank == 0 then print(("parx table %.9f"):format(t)) end
elseif mode == "map" then
  local n, ms, cs = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
  local list = {}
  for i = 1, n do list[i] = i end
  local secs = ms / 1000
  mpi.barrier()
  local t0 = parx.now()
  local res = mpi.map(function(x)
    local t = parx.now()
    while parx.now() - t < secs do end
    return x
  end, list, {chunksize = cs})
  local t = parx.now() - t0
  if rank == 0 then
    assert(#res == n)
    print(("parx map %d %s %d %.6f%s"):format(n, arg[3], mpi.size(), t, cs and (" chunk" .. cs) or ""))
  end
elseif mode == "idle" then
  -- rank 0 waits in recv while rank 1 sleeps; then both sleep with
  -- nothing outstanding.  CPU seconds of the whole process (os.clock)
  -- over the wall time: what the waiting and the idle rank cost.
  local secs = tonumber(arg[2])
  mpi.barrier()
  local c0, t0 = os.clock(), parx.now()
  if rank == 1 then parx.sleep(secs); mpi.send("wake", 0, 9)
  else mpi.recv(1, 9) end
  local waiting = (os.clock() - c0) / (parx.now() - t0)
  c0, t0 = os.clock(), parx.now()
  parx.sleep(secs)
  local idle = (os.clock() - c0) / (parx.now() - t0)
  if rank == 0 then print(("parx idle %.4f %.4f"):format(waiting, idle)) end
end
