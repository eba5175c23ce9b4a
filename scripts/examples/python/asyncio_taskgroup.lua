-- Answers: asyncio, "Coroutines and Tasks": the say_after example run
-- concurrently, first with create_task and then with a TaskGroup: prints
-- "hello" after one delay and "world" after a longer one, the two delays
-- overlapping, between "started" and "finished" lines.  (Python's version
-- prints the clock time on those lines, which differs from run to run;
-- this one prints whether the two waits overlapped: the whole took less
-- than the sum of the delays.)
local function say_after(delay, what)
  parx.sleep(delay)
  print(what)
end

local function overlapped(t0) return parx.now() - t0 < 0.1 + 0.5 end

-- create_task + await: two parx.async tasks, joined.
local t0 = parx.now()
print("started")
local task1 = parx.async(say_after, 0.1, "hello")
local task2 = parx.async(say_after, 0.5, "world")
task1:join()
task2:join()
print("finished, waits overlapped:", overlapped(t0))

-- TaskGroup: parx.scope waits for every task started in it (and, had one
-- failed, would have cancelled the other and raised an error group).
t0 = parx.now()
print("started")
parx.scope(function(tg)
  tg:async(say_after, 0.1, "hello")
  tg:async(say_after, 0.5, "world")
end)
print("finished, waits overlapped:", overlapped(t0))
