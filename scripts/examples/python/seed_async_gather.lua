-- Answers: the seed "Python 多进程、多线程、异步编程与GPU加速", section 3
-- (异步编程): five fetch_data coroutines each sleep a second and return
-- "data"; asyncio.gather collects them and main prints the list,
-- ['data', 'data', 'data', 'data', 'data'].
--
-- parx.async starts five tasks on this VM, parx.gather(list) returns the
-- list of their results in order.  The five sleeps overlap, so the whole
-- takes one sleep, not five (shortened to 0.1 s here).
local function fetch_data()
  parx.sleep(0.1)
  return "data"
end

local tasks = {}
for i = 1, 5 do tasks[i] = parx.async(fetch_data) end
local results = parx.gather(tasks)
print("['" .. table.concat(results, "', '") .. "']")
