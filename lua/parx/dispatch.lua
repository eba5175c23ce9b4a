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
-- 100,000.  An error in a callback fails a task of its own with that error,
-- like an unjoined parx.async task that failed.
--
--   local start = dispatch(next, poll, take, entries)
--     next, poll  the C module's (dispatch.h): id [, extra] | false | nil
--     take(id, extra) -> item | nil: what to queue for a fired source; an
--                  item is a callable entry, or a number: an id looked up
--                  in entries when its turn comes (so that a source stopped
--                  in between is dropped)
--     entry        fn, or {fn, n = #args, args...}
--   start() starts the dispatcher task unless it runs.
local async = require("parx.task").async
local unpack, type, error, xpcall, pcall = unpack, type, error, xpcall, pcall
local traceback, yield = debug.traceback, coroutine.yield

local function call(e)
  if type(e) == "function" then return e() end
  return e[1](unpack(e, 2, e.n + 1))
end

local function fail(err)
  -- Surface the error the way a failed parx.async task does.
  async(error, err, 0)
end

return function(next_id, poll, take, entries)
  -- The queue of fired callbacks, and the runners that may still take one
  -- (started and not yet running, or between two callbacks).
  local queue, qhead, qtail = {}, 1, 0
  local available = 0
  local running = false

  local function runner()
    while qhead <= qtail do
      local e = queue[qhead]
      queue[qhead] = nil
      qhead = qhead + 1
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

  return function()
    if not running then
      running = true
      async(dispatcher)
    end
  end
end
