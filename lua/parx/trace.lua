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
--   parx.stats()              busy, parked, idle time per VM and more
-- The recording is in C (runtime/core/trace.c): a flight recorder that is
-- always on and a log per VM while a session runs.
local c = require "parx.c.trace"

local M = {}

local function check_string(v, fname)
  if type(v) ~= "string" then error(fname .. ": name must be a string", 3) end
  return v
end

function M.start(path)
  if path ~= nil and type(path) ~= "string" then error("parx.trace.start: path must be a string", 2) end
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
  if path ~= nil and type(path) ~= "string" then error("parx.trace.dump: path must be a string", 2) end
  return c.dump(path)
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
