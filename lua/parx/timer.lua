-- parx.timer: one-shot and repeating timers whose callbacks run as tasks.
--
--   parx.timer(delay, fn, ...)    -> Timer: runs fn(...) once, delay seconds
--                                    from now, as a new task of this VM
--   parx.every(interval, fn, ...) -> Timer: runs fn(...) every interval
--                                    seconds (first after one interval)
--   timer:stop()   -> true if it was still pending; it will not fire again
--   timer:active() -> whether it will still fire
--
-- Each firing starts a new task (parx.async semantics), so a callback may
-- park (sleep, IO, channels) without delaying other timers; firings of a slow
-- repeating callback may overlap.  A repeating timer whose ticks pile up
-- while the VM is busy fires once for the missed ticks, not once each.
-- Pending timers keep the script running (like Node's setTimeout and
-- setInterval); stop a repeating timer to let the script end.  An active
-- timer runs even when its Timer object is dropped.  Resolution: 1 ms.
-- (parx.sleep and parx.timeout are the core's; they need no callback.)
local C = require "parx.c.timer"

local async = require("parx.task").async
local unpack, select, type, error = unpack, select, type, error

-- id -> {timer, fn, n, args...}: the callbacks of this VM's pending timers,
-- which also anchors the Timer objects while they are pending.
local entries = {}
local running = false

local function dispatch_loop()
  local next_id = C.next
  while true do
    local id = next_id()
    if id == nil then return end
    if id then
      local e = entries[id]
      if e ~= nil then
        if not e.repeating then entries[id] = nil end
        async(e.fn, unpack(e, 1, e.n))
      end
    end
  end
end

-- The dispatcher task exists only while timers are pending; it ends (and is
-- restarted by the next timer) so that it never keeps the VM alive.
local function dispatcher()
  local ok, err = pcall(dispatch_loop)
  running = false
  if not ok then error(err, 0) end
end

local Timer = C.methods
local cstop = Timer.stop

function Timer.stop(t)
  local was = cstop(t)
  entries[t:id()] = nil
  return was
end

local function callable(fn)
  if type(fn) == "function" then return true end
  local mt = getmetatable(fn)
  return type(mt) == "table" and mt.__call ~= nil
end

local function start(name, delay, interval, fn, ...)
  if not callable(fn) then
    error("bad argument #2 to '" .. name .. "' (function expected, got " .. type(fn) .. ")", 3)
  end
  local t, id, code = C.new(delay, interval)
  if t == nil then return nil, id, code end
  local e = {fn = fn, n = select("#", ...), ...}
  e.repeating = interval ~= nil
  e.timer = t
  entries[id] = e
  if not running then
    running = true
    async(dispatcher)
  end
  return t
end

local M = {}

function M.timer(delay, fn, ...)
  return start("timer", delay, nil, fn, ...)
end

function M.every(interval, fn, ...)
  if type(interval) ~= "number" or interval <= 0 then
    error("bad argument #1 to 'every' (interval must be a number of seconds > 0)", 2)
  end
  return start("every", interval, interval, fn, ...)
end

function M.pending()
  return C.active_count()
end

return M
