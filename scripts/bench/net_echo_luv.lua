-- net_echo_luv.lua -- TCP echo round trips in LuaJIT + luv (callbacks, the
-- way luv is used): an echo server and CONNS clients on 127.0.0.1,
-- SIZE-byte messages, SECONDS.  Prints "<round trips per second> <connections>".
local uv = require "luv"
local CONNS = tonumber(arg[1]) or 50
local SECONDS = tonumber(arg[2]) or 5
local SIZE = tonumber(arg[3]) or 64

local server = uv.new_tcp()
server:bind("127.0.0.1", 0)
server:listen(1024, function()
  local c = uv.new_tcp()
  server:accept(c)
  c:nodelay(true)
  c:read_start(function(err, data)
    if err or not data then c:close() return end
    c:write(data)
  end)
end)
local port = server:getsockname().port
local msg = string.rep("x", SIZE)
local running, total, connected, t0 = false, 0, 0, 0
local clients = {}
for i = 1, CONNS do
  local c = uv.new_tcp()
  clients[i] = c
  c:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    c:nodelay(true)
    local got = 0
    c:read_start(function(err2, data)
      if err2 or not data then return end
      got = got + #data
      while got >= SIZE do
        got = got - SIZE
        total = total + 1
        if running then c:write(msg) end
      end
    end)
    connected = connected + 1
    if connected == CONNS then
      running = true
      t0 = uv.hrtime()
      for _, k in ipairs(clients) do k:write(msg) end
      local timer = uv.new_timer()
      timer:start(SECONDS * 1000, 0, function()
        running = false
        local secs = (uv.hrtime() - t0) / 1e9
        print(string.format("%.0f %d", total / secs, CONNS))
        for _, k in ipairs(clients) do k:close() end
        timer:close()
        server:close()
      end)
    end
  end)
end
uv.run()
