-- echo_server.lua -- a TCP echo server: one parx task per connection.
--
-- Each line a client sends comes back prefixed with "echo: ".  "quit"
-- closes that connection; "shutdown" closes the server, and the script
-- ends once the last connection is done.
--
-- Usage: parx scripts/examples/echo_server.lua [port] [host]
--   port 0 (the default) picks a free port; the first line printed is
--   "listening on HOST:PORT".
io.stdout:setvbuf("line")
local port = tonumber(arg and arg[1]) or 0
local host = arg and arg[2] or "127.0.0.1"

local server
local function handle(stream)
  local peer, peer_port = stream:peername()
  print(("connection from %s:%d"):format(peer, peer_port))
  for line in function() return stream:readline() end do
    if line == "quit" then break end
    if line == "shutdown" then
      server:close()
      stream:write("bye\n")
      break
    end
    assert(stream:write("echo: " .. line .. "\n"))
  end
  print(("%s:%d closed"):format(peer, peer_port))
end

local err, code
server, err, code = parx.tcp.listen(host, port, handle)
if not server then
  io.stderr:write("echo_server: cannot listen on ", host, ":", port, ": ", err, "\n")
  os.exit(1)
end
print(("listening on %s:%d"):format(server.host, server.port))
