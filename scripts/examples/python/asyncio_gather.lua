-- Answers: asyncio, "Running Tasks Concurrently" (asyncio.gather): three
-- factorial computations, named A, B and C, that sleep between steps, run
-- concurrently; their progress lines interleave, then the list of
-- results, [2, 6, 24], is printed.
--
-- parx.async starts each on this VM; parx.gather waits for all of them
-- and returns the results in order.  Tasks that sleep equally long wake
-- in the order they went to sleep, so the interleaving is the same on
-- every run, as it is under asyncio.
local function factorial(name, number)
  local f = 1
  for i = 2, number do
    print(("Task %s: Compute factorial(%d), currently i=%d..."):format(name, number, i))
    parx.sleep(0.05)
    f = f * i
  end
  print(("Task %s: factorial(%d) = %d"):format(name, number, f))
  return f
end

local L = {parx.gather(
  parx.async(factorial, "A", 2),
  parx.async(factorial, "B", 3),
  parx.async(factorial, "C", 4))}
print("[" .. table.concat(L, ", ") .. "]")
