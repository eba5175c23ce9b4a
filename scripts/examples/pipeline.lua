-- pipeline.lua -- three stages on the workers connected by channels:
-- generate 1..N, square, sum.  Each stage closes its output when its input
-- is drained, so the end of the data flows down the pipeline like Go's
-- `for v := range in { out <- f(v) }; close(out)`.
--
-- The Python equivalent chains multiprocessing.Queues with a None sentinel
-- between three Processes; it prints the same line.
local N = tonumber(arg and arg[1]) or 100000

local numbers = parx.channel(256)
local squares = parx.channel(256)

local generate = parx.spawn(function(out, n)
  for i = 1, n do out:send(i) end
  out:close()
end, numbers, N)

local square = parx.spawn(function(input, out)
  for v in input:iter() do out:send(v * v) end
  out:close()
end, numbers, squares)

local total = parx.spawn(function(input)
  local sum, count = 0, 0
  for v in input:iter() do
    sum = sum + v
    count = count + 1
  end
  return sum, count
end, squares)

generate:join()
square:join()
local sum, count = total:join()
print(string.format("sum of the squares of 1..%d: %d (%d values through 3 stages)", N, sum, count))
