-- Answers: multiprocessing, "Exchanging objects between processes: Pipes"
-- (Python's library reference): a child sends a list through one end of
-- a pipe and closes it; the parent receives it from the other end and
-- prints [42, None, 'hello'].
--
-- A pipe's two ends are one parx.channel here: the child sends and closes,
-- the parent receives.  A rendezvous channel (capacity 0) makes send wait
-- for the receiver, as a pipe with no buffer would.
local function f(conn)
  conn:send({n = 3, 42, nil, "hello"})
  conn:close()
end

local parent_conn = parx.channel(0)
local p = parx.spawn(f, parent_conn)
local got = parent_conn:recv()
local parts = {}
for i = 1, got.n do
  local v = got[i]
  parts[i] = v == nil and "None" or type(v) == "string" and ("'" .. v .. "'") or tostring(v)
end
print("[" .. table.concat(parts, ", ") .. "]")
p:join()
