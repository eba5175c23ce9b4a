-- parx.dispatch (internal, not part of the API): the dispatcher task that
-- runs the callbacks of fired sources (timers, signal handlers) as tasks.
--
-- A libuv callback may not call Lua, so a source that fires queues in C
-- (runtime/io/dispatch.h) and one dispatcher task per module and VM, alive
-- only while sources are active, moves what fired to a Lua queue.  Runner
-- tasks call the queued callbacks one after the other; a callback that
-- parks keeps its runner, and the dispatcher starts another runner for the
-- rest of the queue.  So every callback runs in a task that nothing else
-- waits on, yet 100,000 callbacks that do not park cost one task, not
-- 100,000.  An error in a callback is not caught: it fails the runner that
-- called it, reported like an unjoined parx.async task that failed, with
-- the traceback of where the callback raised it (the core's task message
-- handler builds it there); the dispatcher starts another runner for the
-- rest of the queue, as for a callback that parks.
--
--   local d = dispatch(C, take)
--     C            the C module (dispatch.h): next(), poll() -> id [, extra]
--                  | false | nil, and C.methods, the sources' methods,
--                  whose stop() is wrapped to forget the source's entry
--     take(id, extra) -> item | nil: what to queue for a fired source; an
--                  item is a callable entry, or a number: an id looked up
--                  in d.entries when its turn comes (so that a source
--                  stopped in between is dropped)
--   d.entries      id -> entry: fn, or {fn, n = #args, args...}
--   d.anchors      id -> the source's userdata, kept while it may fire
--   d.add(id, source, entry) registers a source and starts the dispatcher
--                  task unless it runs
--   dispatch.check_callable(fn, fname) raises the usual bad argument #2
--                  at the user's line (parx.opts).
local async = require("parx.task").async
local raise = require("parx.opts").error
local unpack, type, error, pcall = unpack, type, error, pcall
local getmetatable, setmetatable = getmetatable, setmetatable
local yield = coroutine.yield

local M = {}

function M.check_callable(fn, fname)
  if type(fn) == "function" then return end
  local mt = getmetatable(fn)
  if type(mt) == "table" and mt.__call ~= nil then return end
  raise("bad argument #2 to '" .. fname .. "' (function expected, got " .. type(fn) .. ")")
end

local function new(C, take)
  local next_id, poll = C.next, C.poll
  local entries, anchors = {}, {}
  -- The queue of fired callbacks, and the runners that may still take one
  -- (started and not yet running, or between two callbacks).
  local queue, qhead, qtail = {}, 1, 0
  local available = 0
  local running = false

  local function runner()
    while qhead <= qtail do
      local callback = queue[qhead]
      queue[qhead] = nil
      qhead = qhead + 1
      if type(callback) == "number" then callback = entries[callback] end
      available = available - 1
      -- Called in place (no wrapper frame), unprotected: see the top.
      if type(callback) == "function" then
        callback()
      elseif callback ~= nil then
        callback[1](unpack(callback, 2, callback.n + 1))
      end
      available = available + 1
    end
    available = available - 1
  end

  local function push(id, extra)
    local item = take(id, extra)
    if item == nil then return end
    qtail = qtail + 1
    queue[qtail] = item
  end

  local function dispatch_loop()
    while true do
      if qhead <= qtail then
        -- Callbacks are waiting: make sure a runner will take them, let the
        -- runners go, and pick up what fired meanwhile without parking.
        if available == 0 then
          available = available + 1
          async(runner)
        end
        yield()
        local id, extra = poll()
        while id do
          push(id, extra)
          id, extra = poll()
        end
      else
        local id, extra = next_id()
        if id == nil then return end
        if id then push(id, extra) end
      end
    end
  end

  -- The dispatcher ends when nothing is active (and the next source starts
  -- a new one) so that it never keeps the VM alive.
  local function dispatcher()
    local ok, err = pcall(dispatch_loop)
    running = false
    if not ok then error(err, 0) end
  end

  local cstop = C.methods.stop
  C.methods.stop = function(source)
    local was = cstop(source)
    local id = source:id()
    entries[id] = nil
    anchors[id] = nil
    return was
  end

  local function add(id, source, entry)
    entries[id] = entry
    anchors[id] = source
    if not running then
      running = true
      async(dispatcher)
    end
  end

  return {entries = entries, anchors = anchors, add = add}
end

return setmetatable(M, {__call = function(_, C, take) return new(C, take) end})
