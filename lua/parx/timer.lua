-- parx.timer: one-shot and repeating timers whose callbacks run as tasks.
--
--   parx.timer(delay, fn, ...)    -> Timer: runs fn(...) once, delay seconds
--                                    from now, in a task of this VM
--   parx.every(interval, fn, ...) -> Timer: runs fn(...) every interval
--                                    seconds (first after one interval)
--   A delay or interval of math.huge means never (the timer stays pending
--   until stopped); NaN or a negative number raises.
--   timer:stop()   -> true if it was still pending; it will not fire again
--   timer:active() -> whether it will still fire
--
-- Callbacks run in tasks (parx.async semantics): a callback may park (sleep,
-- IO, channels) without delaying other timers, and firings of a slow
-- repeating callback may overlap.  An error in a callback fails a task of
-- its own with that error, like an unjoined parx.async task that failed.
-- A repeating timer whose ticks pile up while the VM is busy fires once for
-- the missed ticks, not once each.  Pending timers keep the script running
-- (like Node's setTimeout and setInterval); stop a repeating timer to let
-- the script end.  An active timer runs even when its Timer object is
-- dropped.  Resolution: 1 ms.  (parx.sleep and parx.timeout are the core's.)
--
-- Callbacks run as tasks through the dispatcher that signal handlers use
-- too (lua/parx/dispatch.lua): 100,000 callbacks that do not park cost one
-- task, not 100,000.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.timer"

local dispatch = require "parx.dispatch"
local select, type = select, type

local entries, anchors -- the dispatcher's: id -> callback, id -> Timer

-- A fired timer: a one-shot timer is done, its callback queued as it is; a
-- repeating one is queued by id, so that a stop after the tick was queued
-- drops it (stop means no more calls).
local function take(id, repeating)
  local e = entries[id]
  if e == nil then return nil end -- stopped meanwhile
  if not repeating then
    entries[id] = nil
    anchors[id] = nil
    return e
  end
  return id
end

local d = dispatch(C, take)
entries, anchors = d.entries, d.anchors

local function start(name, delay, interval, fn, ...)
  dispatch.check_callable(fn, name)
  local t, id, code = C.new(delay, interval)
  if t == nil then return nil, id, code end
  local n = select("#", ...)
  if n == 0 and type(fn) == "function" then
    d.add(id, t, fn)
  else
    d.add(id, t, {fn, n = n, ...})
  end
  return t
end

local M = {}

function M.timer(delay, fn, ...)
  if type(delay) ~= "number" or not (delay >= 0) then
    raise("bad argument #1 to 'timer' (delay must be a number of seconds >= 0)")
  end
  return start("timer", delay, nil, fn, ...)
end

function M.every(interval, fn, ...)
  if type(interval) ~= "number" or not (interval > 0) then
    raise("bad argument #1 to 'every' (interval must be a number of seconds > 0)")
  end
  return start("every", interval, interval, fn, ...)
end

-- Timers of this VM still pending (for tests and debugging).
function M.pending()
  return C.active_count()
end

return M
