-- producer_consumer.lua -- the seeds' multiprocessing.Queue example: four
-- workers take items from one queue until each gets the None sentinel.
--
--   def worker(queue):
--       while True:
--           item = queue.get()
--           if item is None: break
--           print(f"Processing item: {item}")
--   queue = multiprocessing.Queue()
--   processes = [Process(target=worker, args=(queue,)) for _ in range(4)]
--   ... queue.put(item) for item in range(10); queue.put(None) x 4; join
--
-- In parx the queue is a channel and the processes are tasks on the
-- workers; nil travels through a channel like any value, so it is the
-- sentinel here too.  (Items print in whatever order the workers take them,
-- as in Python.)
local queue = parx.channel()

local function worker(queue)
  while true do
    local item = queue:recv()
    if item == nil then break end
    print(string.format("Processing item: %d", item))
  end
end

local processes = {}
for i = 1, 4 do processes[i] = parx.spawn(worker, queue) end

for item = 0, 9 do queue:send(item) end
for _ = 1, 4 do queue:send(nil) end

for _, p in ipairs(processes) do p:join() end
