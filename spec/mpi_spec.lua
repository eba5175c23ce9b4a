-- parx.mpi: jobs of 3 ranks started with mpiexec on this machine (the
-- helper scripts under spec/mpi/ do the checking on the ranks and print one
-- "ok NAME" line per check from rank 0), a job of one rank under plain
-- parx, and the stub's message when parx was built without MPI.  Each job
-- runs under `timeout`: a hang fails the spec instead of stalling the
-- suite.
local PARX = os.getenv("PARX_BIN") or "build/parx"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- sh(cmd, limit) -> exit status, stdout, stderr (status 124: timed out;
-- scripts/tools/deadline then writes the stacks of the job's parx
-- processes to stderr, and sends SIGTERM to the command and what it
-- started, so mpiexec takes its ranks down with it, and SIGKILL 5 s later).  The output goes
-- through files, not pipes: a process that outlives the guard (a rank
-- orphaned on another "host") cannot keep the spec waiting for an end of
-- file, and exec's own timeout is the last line of defence.
local function slurp(path)
  local f = io.open(path, "rb")
  local s = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(path)
  return s
end

local function sh(cmd, limit)
  local out, err = os.tmpname(), os.tmpname()
  local r, why = parx.process.exec("sh", {"-c", ("scripts/tools/deadline %d sh -c %s </dev/null >%s 2>%s"):format(
    limit, q(cmd), q(out), q(err))}, {timeout = limit + 30})
  local o, e = slurp(out), slurp(err)
  if not r then return 124, o, e .. "\n(" .. tostring(why) .. ")" end
  return r.status or 128 + (r.signal or 0), o, e
end

local built, why_not = pcall(require, "parx.c.mpi")
local mpiexec = built and select(2, sh("command -v mpiexec", 10)) ~= ""
local root = select(2, sh("id -u", 10)) == "0\n"

-- mpiexec on this machine: more ranks than cores (--oversubscribe), as
-- root only with --allow-run-as-root, and no ssh (every rank is local).
local function mpirun(n, script, limit, env)
  local flags = "--oversubscribe" .. (root and " --allow-run-as-root" or "")
  return sh(("%sOMPI_MCA_plm_rsh_agent=false mpiexec %s -n %d %s %s"):format(
    env or "", flags, n, q(PARX), q(script)), limit)
end

-- The checks spec/mpi/job.lua makes on every rank.
local checks = {
  "collectives of Lua values equal the serial computation",
  "collectives of arrays of every dtype equal the serial computation",
  "tagged messages and ANY_SOURCE arrive exactly once",
  "mpi.map equals pool.map",
  "an item error on rank 2 re-raises on rank 0 naming rank 2",
  "a rank waiting in recv keeps a timer task ticking",
  "a receive of bytes that are not a message is an error, not a crash",
  "split gives communicators with the same methods",
  "recv_into fills the given array, and a message that does not fit is an error that consumes it",
  "two ranks that both send a 32 KB value before receiving do not deadlock",
}

-- The last n lines of s.
local function tail(s, n)
  local lines = {}
  for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

-- The job runs with MPI_DEBUG=1: each rank writes "RANK CHECK" to stderr
-- as it starts a check, so a hang says where every rank was (and the
-- stacks that deadline or netns-cluster print, where each thread was).
local function job_specs(run)
  local status, out, err
  for _, name in ipairs(checks) do
    it(name, function()
      if not status then status, out, err = run() end
      assert(status ~= 124, "the job hung; the end of its stderr:\n" .. tail(err, 40)
        .. "\nand of its stdout:\n" .. tail(out, 3))
      local fail = out:match("FAIL " .. name:gsub("%p", "%%%0") .. "[^\n]*")
      assert(not fail, fail)
      assert(out:find("ok " .. name, 1, true),
        ("no verdict (status %s):\n%s%s"):format(status, out, err))
    end)
  end
end

describe("parx.mpi on 3 ranks (mpiexec -n 3)", function()
  if not built then
    it("needs MPI", function() pending("parx was built without MPI: " .. tostring(why_not)) end)
    return
  end
  if not mpiexec then
    it("needs mpiexec", function() pending("no mpiexec on PATH (openmpi-bin; make deps)") end)
    return
  end

  job_specs(function() return mpirun(3, "spec/mpi/job.lua", 120, "MPI_DEBUG=1 ") end)

  it("allreduce of numbers and of arrays MPI can reduce is MPI's own (no message through rank 0), into opts.out or in place; float16 still goes through rank 0", function()
    local json = require "dkjson"
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    local flags = "--oversubscribe" .. (root and " --allow-run-as-root" or "")
    local status, out, err = sh(("OMPI_MCA_plm_rsh_agent=false mpiexec %s -n 3 %s --trace %s spec/mpi/allreduce.lua"):format(
      flags, q(PARX), q(dir .. "/ar.json")), 90)
    assert(status ~= 124, "the job hung:\n" .. out .. err)
    assert.equal(0, status, err)
    assert.equal("out true 1 1 1\ninplace true 3 30\nhout true\n"
      .. "spec/mpi/allreduce.lua:22: allreduce: opts.out must be an array of v's dtype and size (v an array)\n"
      .. "sum 6 6 100000 float64\nmax 2 0 7 int32\nprod 1.875\nhalf 3 3 float16\n", out)
    local doc = json.decode((assert(slurp(dir .. "/ar.rank1.json"), "no trace of rank 1: " .. err)))
    os.execute("rm -rf " .. q(dir))
    local mark
    for _, e in ipairs(doc.traceEvents) do
      if e.ph == "i" and e.name == "generic" then mark = e.ts end
    end
    assert(mark, "no mark in rank 1's trace")
    local before, after = {}, {}
    for _, e in ipairs(doc.traceEvents) do
      if e.cat == "wait.mpi" then
        local t = e.ts < mark and before or after
        t[e.name] = (t[e.name] or 0) + 1
      end
    end
    -- each call one wait: what the ranks pass, then the values, in one
    assert.equal(5, before["mpi allreduce"], json.encode(before))
    assert.is_nil(before["mpi recv"], json.encode(before))
    assert.is_nil(before["mpi send"], json.encode(before))
    assert.equal(1, after["mpi allreduce"], json.encode(after))
    assert.truthy(after["mpi recv"], json.encode(after))
  end)

  it("an allreduce whose ranks pass different kinds takes the way through rank 0, which raises: the job ends", function()
    local status, out, err = mpirun(3, "spec/mpi/mismatch.lua", 60)
    assert(status ~= 124, "the job hung:\n" .. out .. err)
    assert.is_not.equal(0, status)
    assert.equal("", out)
    assert.truthy(err:find("[rank 0@", 1, true), err)
  end)

  it("a rank that ends right after a send still delivers it", function()
    local status, out, err = mpirun(2, "spec/mpi/exit.lua", 60)
    assert(status ~= 124, "the job hung:\n" .. out .. err)
    assert.equal(0, status, err)
    assert.equal("delivered\n", out)
  end)

  it("an uncaught error on rank 1 makes every rank exit non-zero within 10 s", function()
    local status, out, err = mpirun(3, "spec/mpi/crash.lua", 60)
    local ended = os.time()
    assert(status ~= 124, "the job hung after rank 1 failed:\n" .. out .. err)
    local failed = tonumber(err:match("failing at (%d+)"))
    assert(failed, "rank 1 did not get to fail:\n" .. err)
    -- whole seconds on both sides: 10 s plus one of rounding
    assert(ended - failed <= 11, ("the job ended %d s after rank 1 failed"):format(ended - failed))
    assert.is_not.equal(0, status)
    assert.truthy(err:find("[rank 1@", 1, true), err)
    assert.truthy(err:find("rank one gives up", 1, true), err)
    assert.truthy(err:find("stack traceback", 1, true), err)
  end)
end)

describe("parx.mpi on a simulated cluster of 3 hosts (scripts/tools/netns-cluster)", function()
  local reason
  if not built then reason = "parx was built without MPI"
  else
    local status, out = sh("scripts/tools/netns-cluster --check", 30)
    if status ~= 0 then reason = "network namespaces cannot be made here: " .. out:gsub("\n$", "") end
  end
  if reason then
    it("needs root and network namespaces", function() pending(reason) end)
    return
  end
  -- every message over TCP between namespaces (btl tcp,self)
  job_specs(function()
    return sh(("MPI_DEBUG=1 scripts/tools/netns-cluster -k 3 -t 150 -- -n 3 -x MPI_DEBUG %s spec/mpi/job.lua"):format(q(PARX)), 180)
  end)
end)

describe("parx.mpi under plain parx", function()
  if not built then
    it("needs MPI", function() pending("parx was built without MPI: " .. tostring(why_not)) end)
    return
  end

  it("is a job of one rank whose collectives return its own values", function()
    local status, out, err = sh(q(PARX) .. [[ -e '
      local mpi = require "parx.mpi"
      local a = parx.array.from("int32", {1, 2})
      print(mpi.rank(), mpi.size(), mpi.bcast("b"), mpi.allgather("g")[1],
        mpi.allreduce(5, "sum"), mpi.allreduce(a, "prod"):get(2),
        table.concat(mpi.map(function(x) return x * 2 end, {1, 2, 3}), ","))']], 60)
    assert.equal(0, status, err)
    assert.equal("0\t1\tb\tg\t5\t2\t2,4,6\n", out)
  end)

  it("misuse raises: a rank out of range, an unknown op", function()
    local status, out, err = sh(q(PARX) .. [[ -e '
      local mpi = require "parx.mpi"
      print(select(2, pcall(mpi.send, 1, 1, 0)))
      print(select(2, pcall(mpi.allreduce, 1, "avg")))
      print(select(2, pcall(mpi.send, coroutine.create(print), 0, 0)))']], 60)
    assert.equal(0, status, err)
    assert.truthy(out:find("rank 1 out of range", 1, true), out)
    assert.truthy(out:find("op must be", 1, true), out)
    assert.truthy(out:find("coroutine", 1, true), out)
  end)

  it("a job of one rank names its host, and split and a communicator's collectives work on it", function()
    local status, out, err = sh(q(PARX) .. [[ -e '
      local mpi = require "parx.mpi"
      local name = mpi.processor_name()
      print(type(name), #name > 0)
      local c = mpi.split(0)
      print(c:rank(), c:size(), c:bcast("from root"), c:allreduce(3, "sum"), c:allgather("g")[1])
      print(mpi.split(-1), mpi.world:split(7, 0):size())
      print(select(2, pcall(function() local c = mpi.split("red"); return c end)))
      print(select(2, pcall(function() local c = mpi.world:split(0, 1.5); return c end)))']], 60)
    assert.equal(0, status, err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("string\ttrue", lines[1])
    assert.equal("0\t1\tfrom root\t3\tg", lines[2])
    assert.equal("nil\t1", lines[3])
    assert.equal("(command line):8: bad argument #1 to 'split' (color must be an integer, got string)", lines[4])
    assert.equal("(command line):9: bad argument #2 to 'split' (key must be an integer, got 1.5)", lines[5])
  end)
end)

describe("parx.mpi without MPI", function()
  it("require raises an error that says how to get it", function()
    if built then pending("this parx was built with MPI (MPI=0 builds the stub)") return end
    local status, _, err = sh(q(PARX) .. [[ -e 'require "parx.mpi"']], 60)
    assert.is_not.equal(0, status)
    assert.truthy(err:find("built without MPI: install OpenMPI", 1, true), err)
  end)
end)
