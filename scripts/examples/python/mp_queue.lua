-- Answers: multiprocessing, "Exchanging objects between processes:
-- Queues" (Python's library reference): a child process puts a list on a
-- queue, the parent gets it and prints [42, None, 'hello'].
--
-- The Queue is a parx.channel, the Process a task on a worker VM
-- (parx.spawn); the channel is shared by reference, the list is copied.
-- Lua has no None inside a list (a nil ends it), so the message carries
-- its length, n, and the printer writes nil as None.
local function f(q)
  q:send({n = 3, 42, nil, "hello"})
end

-- Python's repr of the three kinds of items the list holds.
local quote = {string = "'%s'", number = "%d"}

local q = parx.channel()
local p = parx.spawn(f, q)
local list = q:recv()
local parts = {}
for i = 1, list.n do
  local v = list[i]
  parts[i] = v == nil and "None" or quote[type(v)]:format(v)
end
print("[" .. table.concat(parts, ", ") .. "]")
p:join()
