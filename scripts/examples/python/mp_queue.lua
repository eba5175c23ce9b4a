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

local function repr(v)
  if v == nil then return "None" end
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

local q = parx.channel()
local p = parx.spawn(f, q)
local list = q:recv()
local parts = {}
for i = 1, list.n do parts[i] = repr(list[i]) end
print("[" .. table.concat(parts, ", ") .. "]")
p:join()
