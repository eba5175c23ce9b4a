-- parx.sync: mutex, semaphore, barrier, waitgroup, atomic, event,
-- condition (the C side is runtime/mod/sync.c and runtime/mod/event.c,
-- module "parx.c.sync").  Every object is shared by
-- reference across VMs (spawn arguments, upvalues, channel messages) and
-- parks the calling task, never its thread.
--
--   local m = parx.mutex();        m:lock(); ...; m:unlock()
--   m:with(function() counter = counter + 1 end)
--   local s = parx.semaphore(2);   s:acquire(); ...; s:release()
--   local b = parx.barrier(4);     b:wait()      -- arrival number 1..4
--   local wg = parx.waitgroup();   wg:add(3); ...; wg:done(); wg:wait()
--   local a = parx.atomic(0);      a:add(1) --> 1; a:cas(1, 5) --> true
--   local ev = parx.event();       ev:set(); ev:wait(1) --> true
--   local c = parx.condition();    c:with(function() c:wait() end); c:notify()
local C = require "parx.c.sync"
local check_callable = require("parx.opts").check_callable -- raises at the user's line

local pcall, error, pairs = pcall, error, pairs

local mutex = C.metatables.mutex

-- Unlock only if this task still holds it: a condition wait that raised
-- (cancelled) inside fn has released it already.
local function finish(self, ok, ...)
  if self:owned() then self:unlock() end
  if not ok then error((...), 0) end
  return ...
end

-- m:with(fn, ...): lock, call fn(...), unlock -- also when fn raises (the
-- error is re-raised after unlocking).  Returns fn's results.
function mutex.with(self, fn, ...)
  self:lock()
  return finish(self, pcall(fn, ...))
end

local cond = C.metatables.condition
local cwait, crelock = cond._wait, cond._relock
local now = require("parx.task").now

local function relocked(self, ...)
  crelock(self)
  return ...
end

-- c:wait([timeout]) -> true when notified, false when timeout seconds
-- passed first.  The task must hold c's mutex: wait releases it while it
-- waits and holds it again when it returns.  If the task is cancelled
-- while waiting, the cancellation is raised with the mutex NOT held (a
-- cancelled task cannot park to take it again); c:with and m:with know.
function cond.wait(self, timeout)
  return relocked(self, cwait(self, timeout))
end

-- c:wait_for(pred[, timeout]) -> pred's last result: waits until pred()
-- is true (checked first, then after each notify), or the timeout passed.
function cond.wait_for(self, pred, timeout)
  check_callable("wait_for", 1, pred)
  local result = pred()
  if result then return result end
  local deadline = timeout and now() + timeout
  while not result do
    local left
    if deadline then
      left = deadline - now()
      if left <= 0 then return result end
    end
    self:wait(left)
    result = pred()
  end
  return result
end

function cond.lock(self) return self:mutex():lock() end
function cond.unlock(self) return self:mutex():unlock() end

-- c:with(fn, ...): lock c's mutex, call fn(...), unlock (also on error).
function cond.with(self, fn, ...)
  return self:mutex():with(fn, ...)
end

for _, mt in pairs(C.metatables) do mt.__parx_ready = true end

local semaphore = C.metatables.semaphore

-- s:with(fn, ...): acquire, call, release (also on error).
function semaphore.with(self, fn, ...)
  self:acquire()
  local function done(ok, ...)
    self:release()
    if not ok then error((...), 0) end
    return ...
  end
  return done(pcall(fn, ...))
end

return {
  mutex = C.mutex,
  semaphore = C.semaphore,
  barrier = C.barrier,
  waitgroup = C.waitgroup,
  atomic = C.atomic,
  event = C.event,
  condition = C.condition,
}
