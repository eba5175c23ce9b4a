-- Answers: the seed "Day 6: 多进程编程——释放 Python 的多核潜力", its Value
-- program: four processes each add one to a shared Value('i', 0) while
-- holding its lock and print 共享值更新为:n; the main process joins them and
-- prints 最终共享值为:4.
--
-- The shared integer is a parx.atomic, its lock a parx.mutex; both cross
-- to the workers by reference.  Under the lock the four updates, and their
-- lines, come one after the other.
local function increment(value, lock)
  lock:with(function()
    local n = value:add(1)
    print("共享值更新为:" .. n)
  end)
end

local shared_value, lock = parx.atomic(0), parx.mutex()
local processes = {}
for i = 1, 4 do processes[i] = parx.spawn(increment, shared_value, lock) end
for _, p in ipairs(processes) do p:join() end
print("最终共享值为:" .. shared_value:get())
