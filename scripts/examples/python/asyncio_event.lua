-- Answers: asyncio, "Synchronization Primitives: Event": a waiter task
-- prints "waiting for it ...", blocks on the event, and prints
-- "... got it!" once the main task sets it a moment later.
--
-- parx.event() is shared by every VM; ev:wait() parks only the waiting
-- task.  The waiter runs on this VM (parx.async), like an asyncio task.
local function waiter(event)
  print("waiting for it ...")
  event:wait()
  print("... got it!")
end

local event = parx.event()
local waiter_task = parx.async(waiter, event)
parx.sleep(0.05)
event:set()
waiter_task:join()
