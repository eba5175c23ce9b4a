-- Answers: asyncio, "Timeouts" (asyncio.wait_for): a coroutine that would
-- sleep for an hour is given one second; the wait times out and the
-- program prints "timeout!".
--
-- parx.timeout(seconds, fn, ...) runs fn as a task, cancels it when the
-- time is up (its cleanup runs) and returns nil, "timeout" instead of
-- raising.  The limit is shortened so the example runs quickly.
local function eternity()
  parx.sleep(3600)
  print("yay!")
end

local ok, why = parx.timeout(0.1, eternity)
if ok == nil and why == "timeout" then print("timeout!") end
