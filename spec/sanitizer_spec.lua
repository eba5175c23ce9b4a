-- make asan / make tsan themselves: the suppression files must not hide
-- parx's own leaks and races, and a report from a child parx must fail the
-- spec file that started it (scripts/tools/runspecs).
--
-- These run only under the sanitizer they check (PARX_SANITIZER, set by the
-- Makefile); under `make test` they are pending.  Each child writes its
-- reports to a log_path of its own, so the report it is made to produce
-- does not fail this file.

local sanitizer = os.getenv("PARX_SANITIZER")
local bin = os.getenv("PARX_BIN") or "build/parx"
local root = assert(io.popen("pwd")):read("*l")
local supp = root .. "/scripts/tools/" .. (sanitizer == "thread" and "tsan" or "lsan") .. ".supp"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "w"))
  f:write(data)
  f:close()
end

-- ASan: parx_channel_new mallocs in parx and is called by LuaJIT's FFI,
-- so LuaJIT frames lie below parx's in the allocation stack.
local leak = [[
  local ffi = require "ffi"
  ffi.cdef "void *parx_channel_new(long capacity);"
  ffi.C.parx_channel_new(1) -- never released
]]

-- TSan: two VMs fill one shared array through px_array_fill_bytes with no
-- order between them; LuaJIT frames lie below parx's in both stacks.
local race = [[
  local a = parx.array("float64", 4096)
  local c = parx.channel()
  local t = parx.spawn(function(a, c)
    c:send(true)
    a:fill(1)
    return true
  end, a, c)
  c:recv()
  a:fill(2)
  t:join()
]]

-- The environment that sends a sanitizer's reports under dir/logs and
-- reads the repository's suppression file.
local function env(dir)
  if sanitizer == "thread" then
    return ("TSAN_OPTIONS=suppressions=%s:log_path=%s/logs/report"):format(supp, dir)
  end
  -- UBSan reads log_path too, after ASan: both must point there.
  return ("ASAN_OPTIONS=detect_leaks=1:log_path=%s/logs/report UBSAN_OPTIONS=log_path=%s/logs/report"
          .. " LSAN_OPTIONS=suppressions=%s"):format(dir, dir, supp)
end

-- Run script in a child parx; what the sanitizer wrote.
local function child_reports(script)
  local dir = capture("mktemp -d"):gsub("%s+$", "")
  write(dir .. "/child.lua", script)
  os.execute(("env %s %s --workers 2 %s >/dev/null 2>&1"):format(env(dir), q(bin), q(dir .. "/child.lua")))
  local out = capture("cat " .. q(dir) .. "/logs/report.* 2>/dev/null")
  os.execute("rm -rf " .. q(dir))
  return out
end

local function needs(which)
  if sanitizer ~= which then
    pending("needs make " .. (which == "address" and "asan" or "tsan"))
    return false
  end
  return true
end

describe("make asan", function()
  it("reports a leak by parx code that LuaJIT called (lsan.supp hides no LuaJIT caller)", function()
    if not needs("address") then return end
    local out = child_reports(leak)
    assert.matches("LeakSanitizer: detected memory leaks", out)
    assert.matches("parx_channel_new", out)
  end)
end)

-- The same leak in a process that has started MPI (OpenMPI's libraries
-- and components loaded, MPI_Init's own leaks made).
local mpi_built = pcall(require, "parx.c.mpi")
local mpi_leak = [[
  local mpi = require "parx.mpi"
  assert(mpi.size() == 1 and mpi.bcast("b") == "b")
]] .. leak

describe("make asan", function()
  it("reports a leak by parx code in a process that uses MPI, and none of OpenMPI's (lsan.supp's OpenMPI lines)", function()
    if not needs("address") then return end
    if not mpi_built then pending("parx was built without MPI") return end
    -- The stacks reported, not the table of suppressions used after them.
    local out = child_reports(mpi_leak):gsub("Suppressions used:.*", "")
    assert.matches("parx_channel_new", out)
    assert.not_matches("libmpi", out)
    assert.not_matches("libopen%-pal", out)
    assert.not_matches("unknown module", out)
  end)
end)

describe("make tsan", function()
  it("reports a race in parx code that LuaJIT called (tsan.supp hides no LuaJIT caller)", function()
    if not needs("thread") then return end
    local out = child_reports(race)
    assert.matches("ThreadSanitizer: data race", out)
    assert.matches("px_array_fill_bytes", out)
  end)
end)

describe("the spec runner under a sanitizer", function()
  it("fails a spec file whose child parx made a sanitizer report", function()
    if not sanitizer then
      pending("needs make asan or make tsan")
      return
    end
    local dir = capture("mktemp -d"):gsub("%s+$", "")
    write(dir .. "/child.lua", sanitizer == "thread" and race or leak)
    -- The inner spec passes; only its child's report can fail it.
    write(dir .. "/inner_spec.lua", ([[
      describe("inner", function()
        it("starts a child and ignores how it ends", function()
          os.execute(%q)
        end)
      end)
    ]]):format(("%s --workers 2 %s >/dev/null 2>&1"):format(q(bin), q(dir .. "/child.lua"))))
    local out = capture(("cd %s && env %s PARX_SANITIZER_LOGS=%s/logs scripts/tools/runspecs %s %s 2>&1; echo rc=$?")
      :format(q(root), env(dir), q(dir), q(bin), q(dir .. "/inner_spec.lua")))
    os.execute("rm -rf " .. q(dir))
    assert.matches("inner_spec.lua: sanitizer report", out)
    assert.matches("1 passed, 1 failed", out)
    assert.matches("rc=1", out)
  end)
end)
