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
-- How callbacks become tasks cheaply.  A libuv callback may not call Lua, so
-- fired timers queue in C and one dispatcher task per VM (alive only while
-- timers are pending) moves them to a Lua queue.  Runner tasks call the
-- queued callbacks one after the other; a callback that parks keeps its
-- runner, and the dispatcher starts another runner for the rest of the
-- queue.  So every callback runs in a task that nothing else waits on, yet
-- 100,000 callbacks that do not park cost one task, not 100,000.
local C = require "parx.c.timer"

local async = require("parx.task").async
local unpack, select, type, error, xpcall = unpack, select, type, error, xpcall
local traceback, yield = debug.traceback, coroutine.yield

-- id -> fn, or {fn, n = #args, args...}: the callbacks of pending timers.
local entries = {}
-- id -> Timer userdata: anchors the pending timers.
local anchors = {}

-- The queue of fired callbacks, and the runners that may still take one
-- (started and not yet running, or between two callbacks).
local queue, qhead, qtail = {}, 1, 0
local available = 0
local dispatching = false

local function call(e)
  if type(e) == "function" then return e() end
  return e[1](unpack(e, 2, e.n + 1))
end

local function fail(err)
  -- Surface the error the way a failed parx.async task does.
  async(error, err, 0)
end

local function runner()
  while qhead <= qtail do
    local e = queue[qhead]
    queue[qhead] = nil
    qhead = qhead + 1
    -- A repeating timer is queued by id: stopped after it was queued, its
    -- entry is gone and the tick is dropped (stop means no more calls).
    if type(e) == "number" then e = entries[e] end
    available = available - 1
    if e ~= nil then
      local ok, err = xpcall(call, traceback, e)
      if not ok then fail(err) end
    end
    available = available + 1
  end
  available = available - 1
end

local function push(id, repeating)
  local e = entries[id]
  if e == nil then return end -- stopped meanwhile
  if not repeating then
    entries[id] = nil
    anchors[id] = nil
  end
  qtail = qtail + 1
  queue[qtail] = repeating and id or e
end

local function dispatch_loop()
  local next_id, poll = C.next, C.poll
  while true do
    if qhead <= qtail then
      -- Callbacks are waiting: make sure a runner will take them, let the
      -- runners go, and pick up what fired meanwhile without parking.
      if available == 0 then
        available = available + 1
        async(runner)
      end
      yield()
      local id, repeating = poll()
      while id do
        push(id, repeating)
        id, repeating = poll()
      end
    else
      local id, repeating = next_id()
      if id == nil then return end
      if id then push(id, repeating) end
    end
  end
end

-- The dispatcher task exists only while timers are pending or callbacks
-- queued; it ends (and the next timer starts a new one) so that it never
-- keeps the VM alive.
local function dispatcher()
  local ok, err = pcall(dispatch_loop)
  dispatching = false
  if not ok then error(err, 0) end
end

local Timer = C.methods
local cstop = Timer.stop

function Timer.stop(t)
  local was = cstop(t)
  local id = t:id()
  entries[id] = nil
  anchors[id] = nil
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
  local n = select("#", ...)
  if n == 0 and type(fn) == "function" then
    entries[id] = fn
  else
    entries[id] = {fn, n = n, ...}
  end
  anchors[id] = t
  if not dispatching then
    dispatching = true
    async(dispatcher)
  end
  return t
end

local M = {}

function M.timer(delay, fn, ...)
  return start("timer", delay, nil, fn, ...)
end

function M.every(interval, fn, ...)
  if type(interval) ~= "number" or not (interval > 0) then
    error("bad argument #1 to 'every' (interval must be a number of seconds > 0)", 2)
  end
  return start("every", interval, interval, fn, ...)
end

-- Timers of this VM still pending (for tests and debugging).
function M.pending()
  return C.active_count()
end

return M
