-- submit + as_completed: the seed's concurrent.futures example.
--
--   import concurrent.futures
--   import time
--   def worker(n):
--       time.sleep(n)
--       return n * n
--   if __name__ == "__main__":
--       with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
--           futures = [executor.submit(worker, i) for i in range(4)]
--           for future in concurrent.futures.as_completed(futures):
--               result = future.result()
--               print(f"结果: {result}")
--
-- Prints 结果: 0, 1, 4 and 9, one second apart.  parx.sleep parks the task,
-- not the worker, so the four tasks sleep at the same time on any number of
-- workers.
local pool = parx.pool

local function worker(n)
  parx.sleep(n)
  return n * n
end

local futures = {}
for i = 0, 3 do futures[#futures + 1] = pool.submit(worker, i) end
for future in parx.as_completed(futures) do
  local result = future:result()
  print(("结果: %d"):format(result))
end
