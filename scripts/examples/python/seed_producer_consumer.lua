-- Answers: the seed "Day 6: 多进程编程——释放 Python 的多核潜力", its Queue
-- program: a producer process puts 0..4 on a queue, printing 生产者生产了:i;
-- once it has ended, a consumer process takes items while the queue is not
-- empty, printing 消费者消费了:i.
--
-- The Queue is a parx.channel shared by reference; each process is a task
-- on a worker VM.  ch:empty() is queue.empty().
local function producer(queue)
  for i = 0, 4 do
    queue:send(i)
    print(("生产者生产了:%d"):format(i))
  end
end

local function consumer(queue)
  while not queue:empty() do
    local item = queue:recv()
    print(("消费者消费了:%d"):format(item))
  end
end

local q = parx.channel()
local p1 = parx.spawn(producer, q)
p1:join()
local p2 = parx.spawn(consumer, q)
p2:join()
