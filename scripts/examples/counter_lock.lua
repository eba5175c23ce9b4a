-- counter_lock.lua -- the seeds' shared counter: multiprocessing.Value
-- incremented by four processes under its lock.
--
--   def increment(shared_value):
--       with shared_value.get_lock():
--           shared_value.value += 1
--           print(f"共享值更新为:{shared_value.value}")
--   shared_value = Value('i', 0)
--   processes = [Process(target=increment, args=(shared_value,)) for _ in range(4)]
--   ...
--   print(f"最终共享值为:{shared_value.value}")
--
-- In parx the Value is a parx.atomic (shared by reference with every
-- worker) and get_lock() is a parx.mutex; m:with(fn) is Python's `with`:
-- it unlocks also when fn raises.  The read-modify-write below is two
-- separate operations on purpose, like `value += 1` in Python: the mutex is
-- what makes it safe.
local shared_value = parx.atomic(0)
local lock = parx.mutex()

local function increment(shared_value, lock)
  lock:with(function()
    shared_value:set(shared_value:get() + 1)
    print(string.format("共享值更新为:%d", shared_value:get()))
  end)
end

local processes = {}
for i = 1, 4 do processes[i] = parx.spawn(increment, shared_value, lock) end
for _, p in ipairs(processes) do p:join() end

print(string.format("最终共享值为:%d", shared_value:get()))
