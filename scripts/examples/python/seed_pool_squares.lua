-- Answers: the seed "Day 6: 多进程编程——释放 Python 的多核潜力", its Pool
-- program: pool.map squares 0..9 on a pool of four processes and prints
-- 任务结果: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81].
--
-- parx.pool.map over the runtime's workers, at most four at once
-- (opts.workers), results in order.
local function task(num) return num ^ 2 end

local nums = {}
for i = 0, 9 do nums[#nums + 1] = i end
local results = parx.pool.map(task, nums, {workers = 4})
print("任务结果: [" .. table.concat(results, ", ") .. "]")
