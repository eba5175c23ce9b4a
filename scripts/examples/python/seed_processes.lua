-- Answers: the seed "Day 6: 多进程编程——释放 Python 的多核潜力", its first
-- program: four processes each run task(i), printing 进程 i 正在运行, and the
-- main process joins them all.
--
-- Each process is a task on a worker VM (parx.spawn).  Python's lines come
-- in whatever order the processes run; here each task returns its line
-- and the main task prints them in the order it joins them, so the output
-- is the same on every run.
local function task(name)
  return ("进程 %d 正在运行"):format(name)
end

local processes = {}
for i = 0, 3 do processes[#processes + 1] = parx.spawn(task, i) end
for _, p in ipairs(processes) do print(p:join()) end
