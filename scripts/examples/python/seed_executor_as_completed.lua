-- Answers: the seed "Python 并行处理: 初学者指南", its Future example: a
-- ThreadPoolExecutor(max_workers=4) runs worker(n) for n = 0..3, each
-- sleeping n seconds and returning n * n; as_completed yields them as they
-- finish, printing 结果: 0, 1, 4 and 9.
--
-- parx.pool.new{workers = 4} is the executor, p:submit its submit, and
-- parx.as_completed yields the tasks in the order they end.
local function worker(n)
  parx.sleep(n)
  return n * n
end

local executor = parx.pool.new{workers = 4}
local futures = {}
for i = 0, 3 do futures[#futures + 1] = executor:submit(worker, i) end
for future in parx.as_completed(futures) do
  local result = future:join()
  print("结果: " .. result)
end
executor:close()
executor:join()
