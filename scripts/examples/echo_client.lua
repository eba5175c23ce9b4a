-- echo_client.lua -- talk to echo_server.lua: send lines, print replies.
--
-- Usage: parx scripts/examples/echo_client.lua [--port N] [--host H] [line ...]
--   Without --port it starts echo_server.lua itself (as a child process on
--   a free port), talks to it, and tells it to shut down at the end.
--   Several clients run at once (parx.async), each on its own connection.
local port, host, lines = nil, "127.0.0.1", {}
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--port" then
      port = assert(tonumber(arg[i + 1]), "--port needs a number")
      i = i + 2
    elseif arg[i] == "--host" then
      host = assert(arg[i + 1], "--host needs a name")
      i = i + 2
    else
      lines[#lines + 1] = arg[i]
      i = i + 1
    end
  end
end
if #lines == 0 then lines = {"hello", "parallel", "world"} end

local child
if not port then
  local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
  local parx_bin = arg and arg[-1] or "parx"
  child = assert(io.popen(("%q %q 0"):format(parx_bin, here .. "/echo_server.lua")))
  local first = child:read("*l") or ""
  port = tonumber(first:match(":(%d+)$"))
  if not port then error("echo_server did not start: " .. first) end
end

local function client(id)
  local c = assert(parx.tcp.connect(host, port, {timeout = 5}))
  local replies = {}
  for _, line in ipairs(lines) do
    assert(c:write(("[%d] %s\n"):format(id, line)))
    replies[#replies + 1] = assert(c:readline())
  end
  c:write("quit\n")
  c:close()
  return replies
end

-- Three clients at once; the results come back in order.
local tasks = {}
for id = 1, 3 do tasks[id] = parx.async(client, id) end
for id, replies in ipairs(parx.gather(tasks)) do
  for _, r in ipairs(replies) do print(("client %d got: %s"):format(id, r)) end
end

if child then
  local c = assert(parx.tcp.connect(host, port))
  c:write("shutdown\n")
  print("server said: " .. tostring(c:readline()))
  c:close()
  child:close() -- waits for the server to end
end
