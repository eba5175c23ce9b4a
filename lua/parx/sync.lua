-- parx.sync: mutex, semaphore, barrier, waitgroup, atomic (the C side is
-- runtime/mod/sync.c, module "parx.c.sync").  Every object is shared by
-- reference across VMs (spawn arguments, upvalues, channel messages) and
-- parks the calling task, never its thread.
--
--   local m = parx.mutex();        m:lock(); ...; m:unlock()
--   m:with(function() counter = counter + 1 end)
--   local s = parx.semaphore(2);   s:acquire(); ...; s:release()
--   local b = parx.barrier(4);     b:wait()      -- arrival number 1..4
--   local wg = parx.waitgroup();   wg:add(3); ...; wg:done(); wg:wait()
--   local a = parx.atomic(0);      a:add(1) --> 1; a:cas(1, 5) --> true
local C = require "parx.c.sync"

local pcall, error, pairs = pcall, error, pairs

local mutex = C.metatables.mutex

local function finish(self, ok, ...)
  self:unlock()
  if not ok then error((...), 0) end
  return ...
end

-- m:with(fn, ...): lock, call fn(...), unlock -- also when fn raises (the
-- error is re-raised after unlocking).  Returns fn's results.
function mutex.with(self, fn, ...)
  self:lock()
  return finish(self, pcall(fn, ...))
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
}
