-- parx.trace: a timeline of what every VM did, for Perfetto
-- (ui.perfetto.dev, chrome://tracing) or parx.timeline's SVG, and
-- parx.stats(), the counters behind `parx --stats`.
--
--   parx.trace.start([path])  start recording (path: the JSON file stop()
--                             writes); nil, "cannot write trace: ..." when
--                             path cannot be written
--   parx.trace.stop()         stop; write the file; true (false: none ran)
--   parx.trace.mark(name)     an instant on the timeline
--   parx.trace.label(name)    the running task's name in traces and dumps
--   parx.trace.events()       the session's events as Chrome trace-event
--                             tables (while on, or after stop)
--   parx.trace.dump([path])   every live task with its state, wait and
--                             traceback (text); the recent timeline to path
--   parx.trace.merge(out, paths)  one trace of several processes' (MPI ranks)
--   parx.stats()              busy, parked, idle time per VM and more
-- The recording is in C (runtime/core/trace.c): a flight recorder that is
-- always on and a log per VM while a session runs.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local c = require "parx.c.trace"

local M = {}

local function check_string(v, fname)
  if type(v) ~= "string" then raise(fname .. ": name must be a string") end
  return v
end

function M.start(path)
  if path ~= nil and type(path) ~= "string" then raise("parx.trace.start: path must be a string") end
  return c.start(path)
end

M.stop = c.stop
M.events = c.events
M.tracing = c.tracing

function M.mark(name) c.mark(check_string(name, "parx.trace.mark")) end
function M.label(name) c.label(check_string(name, "parx.trace.label")) end

function M.stats() return c.stats() end

-- dump([path]) -> text: every live task of every VM with its state, what
-- it waits on and since when, and its traceback; the flight recorder's
-- recent timeline goes to path (Chrome JSON).  text, "error" when path
-- could not be written.
function M.dump(path)
  if path ~= nil and type(path) ~= "string" then raise("parx.trace.dump: path must be a string") end
  return c.dump(path)
end

-- merge(out, paths) -> true | nil, message: one trace of several, each
-- process (an MPI job's ranks: `parx --trace t.json` under mpiexec writes
-- t.rank0.json, t.rank1.json, ... with pid = rank + 1) on its own tracks,
-- their times aligned on the system clock (each file's
-- otherData.clock_origin_us).  Reads the files parx writes (one event a
-- line), not every Chrome trace.
function M.merge(out, paths)
  if type(out) ~= "string" then raise("parx.trace.merge: out must be a string") end
  if type(paths) ~= "table" or #paths == 0 then raise("parx.trace.merge: paths must be a list of file names") end
  local files, first = {}, math.huge
  for i, path in ipairs(paths) do
    local f, err = io.open(path, "rb")
    if not f then return nil, "cannot read trace: " .. err end
    local text = f:read("*a")
    f:close()
    local origin = tonumber(text:match('"clock_origin_us":([%d.e+-]+)'))
    if not origin or not text:find('^{"traceEvents":%[') then
      return nil, "cannot merge " .. path .. ": not a trace parx wrote"
    end
    files[i] = {text = text, origin = origin}
    if origin < first then first = origin end
  end
  local f, err = io.open(out, "wb")
  if not f then return nil, "cannot write trace: " .. err end
  f:write('{"traceEvents":[\n')
  local n = 0
  for _, file in ipairs(files) do
    local shift = file.origin - first
    for line in file.text:gmatch("[^\n]+") do
      if line:sub(1, 6) == '{"ph":' then
        line = line:gsub(",$", ""):gsub('"ts":([%d.]+)', function(ts)
          return string.format('"ts":%.3f', tonumber(ts) + shift)
        end, 1)
        f:write(n > 0 and ",\n" or "", line)
        n = n + 1
      end
    end
  end
  f:write('\n],\n"displayTimeUnit":"ms"}\n')
  local ok, werr = f:close()
  if not ok then return nil, "cannot write trace: " .. tostring(werr) end
  return true
end

-- SIGUSR1 (the command line watches it: parx_dump_on_sigusr1;
-- core/trace_dump.c calls _usr1 on the main VM): the dump on stderr, the
-- recent timeline in $TMPDIR; the process goes on.
local dumps = 0
local function on_usr1()
  dumps = dumps + 1
  local path = string.format("%s/parx-%d-%d.json", os.getenv("TMPDIR") or "/tmp", c.pid(), dumps)
  local text, err = c.dump(path, true)
  io.stderr:write(string.format("parx: SIGUSR1: every task of process %d\n", c.pid()), text,
    err and ("parx: cannot write the recent timeline: " .. err .. "\n")
        or ("parx: the recent timeline (flight recorder): " .. path .. "\n"))
  io.stderr:flush()
end

-- The command line after a deadlock report or an uncaught error that ends
-- the run (runtime/cli/main.c crash_dump; the report itself is printed
-- already): every other live task with its wait and traceback, and the
-- recent timeline in $TMPDIR, as SIGUSR1 gives them; nothing when no other
-- task is left.  Never raises.
function M._cli_crash(why)
  pcall(function()
    local path = string.format("%s/parx-%d-%s.json", os.getenv("TMPDIR") or "/tmp", c.pid(), why)
    local text, err = c.dump(path, true)
    if not text:find("\n  task ") then
      os.remove(path)
      return
    end
    text = text:gsub("[^\n]+:\n  no tasks\n", "") -- short: only the VMs with tasks
    io.stderr:write(why == "deadlock" and "parx: every task at the deadlock:\n"
                      or "parx: the tasks still alive when the error ended the run:\n", text,
      err and ("parx: cannot write the recent timeline: " .. err .. "\n")
          or ("parx: the recent timeline (flight recorder): " .. path .. "\n"))
    io.stderr:flush()
  end)
end

-- The command line's start of a run: SIGUSR1 dumps; --timeline traces.
function M._usr1()
  require("parx.task").async(on_usr1)
end

-- The command line's end of a run (runtime/cli/main.c): the SVG of the
-- session and the --stats report, each through its module when it is
-- there, a one-line note when it is not.  Never raises.
function M._cli_finish(svg, by, stats)
  local ok, err = true, nil
  if svg then
    c.stop()
    local okm, timeline = pcall(require, "parx.timeline")
    if okm and type(timeline) == "table" and type(timeline.write) == "function" then
      local okw, r, msg = pcall(timeline.write, svg, c.events(), {by = by or "vm"})
      if not okw or r == nil then ok, err = false, "cannot write timeline: " .. tostring(okw and msg or r) end
    else
      io.stderr:write("parx: --timeline: parx.timeline is not available in this build\n")
    end
  end
  if stats then
    local okm, report = pcall(require, "parx.stats_report")
    local s = c.stats()
    local okf, text = false, nil
    if okm and type(report) == "table" and type(report.format) == "function" then
      okf, text = pcall(report.format, s)
    end
    if okf and type(text) == "string" then
      io.stderr:write(text)
    else
      local busy = 0
      for _, v in ipairs(s.vms) do busy = busy + v.busy end
      io.stderr:write(string.format("parx: stats: wall %.3f s, busy %.3f s over %d VMs, speedup %.2f\n",
        s.wall, busy, #s.vms, s.wall > 0 and busy / s.wall or 0))
    end
  end
  if not ok then io.stderr:write("parx: ", err, "\n") end
  return ok
end

return M
