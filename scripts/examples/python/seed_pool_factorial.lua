-- Answers: the seed "Python 多进程、多线程、异步编程与GPU加速", section 1
-- (多进程): compute_factorial of 3, 5 and 10 on a Pool(processes=2) with
-- pool.map, printing the list [6, 120, 3628800] inside the `with` block and
-- again after it.
--
-- parx.pool.new{workers = 2} is the Pool of two: two VMs of its own, on
-- threads of their own; close() and join() end them as leaving Python's
-- `with` block does.
local function compute_factorial(n)
  local f = 1
  for i = 2, n do f = f * i end
  return f
end

local numbers = {3, 5, 10}
local pool = parx.pool.new{workers = 2}
local results = pool:map(compute_factorial, numbers)
print("[" .. table.concat(results, ", ") .. "]")
pool:close()
pool:join()
print("[" .. table.concat(results, ", ") .. "]")
