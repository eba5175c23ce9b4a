-- parx.tcp against real peers on 127.0.0.1 / ::1: parx servers answering
-- python3 and nc clients, parx clients talking to parx servers in this VM
-- and on workers, refused and timed-out connects, peers that close
-- mid-read, cancelled readers, back-pressure and garbage collection.
local tcp = parx.tcp
local process = parx.process
local PARX = os.getenv("PARX_BIN") or (arg and arg[-1]) or "build/parx"

-- A server that upper-cases each line it gets.
local function upper_server()
  return assert(tcp.listen("127.0.0.1", 0, function(s)
    for line in function() return s:readline() end do
      assert(s:write(line:upper() .. "\n"))
    end
  end))
end

-- A port on which nothing listens (bound then closed).
local function dead_port()
  local srv = assert(tcp.listen("127.0.0.1", 0, function() end))
  local port = srv.port
  srv:close()
  parx.sleep(0.01) -- let the close reach the kernel
  return port
end

describe("parx.tcp", function()
  describe("a parx server", function()
    it("hides the metatables of servers and streams from scripts", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s) s:close() end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      assert.equal("parx.tcp.server", getmetatable(srv))
      assert.equal("parx.stream", getmetatable(c))
      assert.has_error(function() setmetatable(c, {}) end)
      c:close()
      srv:close()
    end)

    it("iterates a stream's lines with s:lines()", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        assert(s:write("one\ntwo\r\nthree"))
        s:close()
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      local got = {}
      for line in c:lines() do got[#got + 1] = line end
      c:close()
      srv:close()
      assert.same({"one", "two", "three"}, got)
    end)

    it("answers a python3 socket client", function()
      local srv = upper_server()
      local code = [[
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"hello\nworld\n")
f = s.makefile("rb")
print(f.readline().decode().strip(), f.readline().decode().strip())
]]
      local r = assert(process.exec("python3", {"-c", code, tostring(srv.port)}, {timeout = 20}))
      srv:close()
      assert.equal(0, r.status)
      assert.equal("HELLO WORLD\n", r.stdout)
    end)

    it("answers nc, which sends EOF after its input", function()
      local srv = upper_server()
      local r = assert(process.exec("nc", {"-N", "127.0.0.1", tostring(srv.port)},
                                    {stdin = "one\r\ntwo\nthree", timeout = 20}))
      srv:close()
      assert.equal(0, r.status)
      -- "\r\n" ends a line like "\n"; the last line needs no end of line.
      assert.equal("ONE\nTWO\nTHREE\n", r.stdout)
    end)

    it("binds an ephemeral port, reports it and stops on close", function()
      local srv = upper_server()
      assert.is_true(srv.port > 0)
      assert.equal("127.0.0.1", srv.host)
      assert.is_false(srv.closed)
      srv:close()
      assert.is_true(srv.closed)
      srv:close() -- idempotent
      local c, msg, code = tcp.connect("127.0.0.1", srv.port)
      assert.is_nil(c)
      assert.equal("ECONNREFUSED", code)
    end)

    it("serves 50 clients at once, one task per connection", function()
      local srv = upper_server()
      local tasks = {}
      for i = 1, 50 do
        tasks[i] = parx.async(function()
          local c = assert(tcp.connect("127.0.0.1", srv.port))
          for j = 1, 20 do
            assert(c:write("c" .. i .. "-" .. j .. "\n"))
            assert.equal("C" .. i .. "-" .. j, c:readline())
          end
          c:close()
          return i
        end)
      end
      local results = parx.gather(tasks)
      srv:close()
      assert.equal(50, #results)
      assert.equal(50, results[50])
    end)

    it("listens and connects over IPv6", function()
      local srv, msg, code = tcp.listen("::1", 0, function(s) s:write("six\n") end)
      if not srv then
        pending("no IPv6 loopback here: " .. tostring(msg))
        return
      end
      assert.equal("::1", srv.host)
      local c = assert(tcp.connect("::1", srv.port))
      assert.equal("six", c:readline())
      local ip = c:peername()
      assert.equal("::1", ip)
      c:close()
      srv:close()
    end)

    it("listens on every worker too with {workers = true}", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        s:write(tostring(require("parx.c.task").vm_id()) .. "\n")
      end, {workers = true}))
      assert.is_true(srv.port > 0)
      assert.is_false(srv.closed)
      local vms = {}
      for _ = 1, 40 do
        local c = assert(tcp.connect("127.0.0.1", srv.port))
        vms[assert(c:readline())] = true
        c:close()
      end
      srv:close()
      assert.is_true(srv.closed)
      local n = 0
      for _ in pairs(vms) do n = n + 1 end
      assert.is_true(n >= 1)
      parx.sleep(0.05) -- the workers close their sockets
      local c, _, code = tcp.connect("127.0.0.1", srv.port)
      assert.is_nil(c)
      assert.equal("ECONNREFUSED", code)
    end)

    it("keeps running when a handler fails", function()
      local n = 0
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        n = n + 1
        if n == 1 then error("handler failure") end
        s:write("ok\n")
      end))
      local a = assert(tcp.connect("127.0.0.1", srv.port))
      assert.is_nil(a:read()) -- the failed handler's stream was closed
      local b = assert(tcp.connect("127.0.0.1", srv.port))
      assert.equal("ok", b:readline())
      a:close(); b:close(); srv:close()
    end)
  end)

  describe("streams", function()
    it("read(n) returns n bytes across segments, read() what is there", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        s:write("abc"); parx.sleep(0.02); s:write("defgh"); parx.sleep(0.02)
        s:write("tail")
      end))
      local c = assert(tcp.connect("localhost", srv.port))
      assert.equal("", c:read(0))
      assert.equal("abcdef", c:read(6))
      assert.equal("gh", c:read())
      assert.equal("tail", c:read(100)) -- fewer only at the end
      assert.is_nil(c:read())
      assert.is_nil(c:readline())
      c:close(); srv:close()
    end)

    it("read('a') returns everything up to the peer's EOF, then ''", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        s:write("first\n"); parx.sleep(0.02); s:write(string.rep("z", 3 * 2^20))
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      assert.equal("first", c:read("l"))
      local all = c:read("a")
      assert.equal(3 * 2^20, #all)
      assert.equal(string.rep("z", 3 * 2^20), all)
      assert.equal("", c:read("*a"))
      assert.is_nil(c:read())
      assert.has_error(function() c:read("x") end)
      c:close(); srv:close()
    end)

    it("returns what came before a peer closed mid-read, then nil", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        s:write("line one\npartial")
        -- the handler returns: the stream closes without finishing the line
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      assert.equal("line one", c:readline())
      assert.equal("partial", c:readline())
      assert.is_nil(c:readline())
      assert.is_nil(c:read(10))
      c:close(); srv:close()
    end)

    it("readline() refuses a line longer than 8 MiB; the bytes stay for read()", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        s:write(string.rep("y", 9 * 2^20))
        s:read()
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      local v, msg, code = c:readline()
      assert.is_nil(v)
      assert.equal("ENOBUFS", code)
      assert.equal(string.rep("y", 1000), c:read(1000))
      c:close(); srv:close()
    end)

    it("shutdown() sends EOF and keeps reading", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        local got = {}
        for chunk in function() return s:read() end do got[#got + 1] = chunk end
        s:write("got " .. #table.concat(got) .. " bytes\n")
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      assert(c:write(string.rep("x", 1000)))
      assert.is_true(c:shutdown())
      assert.equal("got 1000 bytes", c:readline())
      c:close(); srv:close()
    end)

    it("parks a writer while the peer does not read (back-pressure)", function()
      local release = false
      local received = 0
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        while not release do parx.sleep(0.01) end
        for chunk in function() return s:read() end do received = received + #chunk end
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      -- More than the kernel buffers between a writer and a reader that
      -- does not read: the sender's largest buffer plus the receiver's
      -- initial one (the receive window only grows as the peer reads).
      local function sysctl(name, field)
        local f = io.open("/proc/sys/net/ipv4/" .. name)
        local line = f and f:read("*l")
        if f then f:close() end
        local values = {}
        for v in (line or ""):gmatch("%d+") do values[#values + 1] = tonumber(v) end
        return values[field] or 0
      end
      local size = math.max(16 * 2^20, 2 * (sysctl("tcp_wmem", 3) + sysctl("tcp_rmem", 2)))
      local big = string.rep("0123456789abcdef", math.ceil(size / 16))
      local writer = parx.async(function() return c:write(big) end)
      parx.sleep(0.2)
      assert.is_false(writer:done()) -- the kernel cannot take it all
      release = true
      assert.is_true(writer:join())
      c:close()
      while received < #big do parx.sleep(0.01) end
      assert.equal(#big, received)
      srv:close()
    end)

    it("a task cancelled while parked on a read releases the stream", function()
      local go = parx.channel()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        go:recv()
        s:write("late\n")
        go:recv()
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      local reader = parx.async(function() return c:readline() end)
      parx.sleep(0.02)
      reader:cancel()
      assert.has_error(function() reader:join() end)
      -- The stream is free again and nothing was lost.
      go:send(true)
      assert.equal("late", c:readline())
      go:send(true)
      c:close(); srv:close()
    end)

    it("parx.timeout around a read cancels it", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s) s:read() end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      local v, why = parx.timeout(0.05, function() return c:read() end)
      assert.is_nil(v)
      assert.equal("timeout", why)
      c:close(); srv:close()
    end)

    it("close() wakes a parked reader with ECLOSED; later use raises", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s) s:read() end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      local reader = parx.async(function() return c:read() end)
      parx.sleep(0.02)
      c:close()
      local v, msg, code = reader:join()
      assert.is_nil(v)
      assert.equal("CLOSED", code)
      assert.is_true(c:closed())
      assert.has_error(function() c:read() end, "attempt to use a closed stream")
      assert.has_error(function() c:write("x") end, "attempt to use a closed stream")
      assert.is_true(c:close()) -- idempotent
      srv:close()
    end)

    it("a second concurrent reader is misuse", function()
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s) s:read() end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      local reader = parx.async(function() return c:read() end)
      parx.sleep(0.01)
      assert.has_error(function() c:read() end, "stream is already being read by another task")
      c:close()
      reader:join()
      srv:close()
    end)

    it("an unreachable stream is closed by the garbage collector", function()
      local eof = parx.channel(1)
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        eof:send(s:read() == nil)
      end))
      do
        local c = assert(tcp.connect("127.0.0.1", srv.port))
        c = nil
      end
      collectgarbage(); collectgarbage()
      assert.is_true(eof:recv())
      srv:close()
    end)

    it("sockname and peername of the two ends of a connection mirror each other", function()
      local server_side = parx.channel(1)
      local srv = assert(tcp.listen("127.0.0.1", 0, function(s)
        local lh, lp = s:sockname()
        local ph, pp = s:peername()
        server_side:send({lh, lp, ph, pp})
      end))
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      local host, port = c:sockname()
      assert.equal("127.0.0.1", host)
      assert.is_true(port > 0)
      local seen = server_side:recv()
      assert.same({"127.0.0.1", srv.port, host, port}, seen)
      assert.same({"127.0.0.1", srv.port}, {c:peername()})
      c:close()
      srv:close()
      assert.has_error(function() c:sockname() end, "attempt to use a closed stream")
    end)
  end)

  describe("connect", function()
    it("reports a refused connection", function()
      local c, msg, code = tcp.connect("127.0.0.1", dead_port())
      assert.is_nil(c)
      assert.equal("ECONNREFUSED", code)
      assert.equal("ECONNREFUSED: connection refused", msg)
    end)

    it("times out when the peer's accept queue is full", function()
      local C = require "parx.c.tcp"
      -- Nobody calls accept(): the server takes 64 connections into its
      -- own queue, the kernel a couple more, then SYNs are dropped.
      local srv = assert(C.listen("127.0.0.1", 0, 1))
      local held, code = {}, nil
      for i = 1, 200 do
        local c, _, err = tcp.connect("127.0.0.1", srv.port, {timeout = 0.2})
        if not c then code = err break end
        held[#held + 1] = c
      end
      assert.equal("ETIMEDOUT", code)
      for _, c in ipairs(held) do c:close() end
      srv:close()
    end)

    it("works from tasks on worker VMs", function()
      local srv = upper_server()
      local t = parx.spawn(function(port)
        local c = assert(parx.tcp.connect("127.0.0.1", port))
        c:write("from a worker\n")
        local line = c:readline()
        c:close()
        return line
      end, srv.port)
      assert.equal("FROM A WORKER", t:join())
      -- and a server on a worker, a client here
      local ports = parx.channel(1)
      local w = parx.spawn(function(ch)
        local s = assert(parx.tcp.listen("127.0.0.1", 0, function(c)
          c:write("worker says hi\n")
        end))
        ch:send(s.port)
        parx.sleep(0.3)
        s:close()
        return true
      end, ports)
      local port = ports:recv()
      local c = assert(tcp.connect("127.0.0.1", port))
      assert.equal("worker says hi", c:readline())
      c:close()
      assert.is_true(w:join())
      srv:close()
    end)

    it("raises on misuse", function()
      assert.has_error(function() tcp.connect(42, 80) end)
      assert.has_error(function() tcp.connect("127.0.0.1", 70000) end)
      assert.has_error(function() tcp.connect("127.0.0.1", 80, {timeout = "soon"}) end)
      assert.has_error(function() tcp.listen("127.0.0.1", 0, "not a function") end)
      local srv = upper_server()
      local c = assert(tcp.connect("127.0.0.1", srv.port))
      assert.has_error(function() c:read(-1) end)
      assert.has_error(function() c:write({}) end)
      assert.has_error(function() c.read(42) end)
      c:close(); srv:close()
    end)
  end)

  it("runs the echo client example against the echo server example", function()
    local r = assert(process.exec(PARX, {"scripts/examples/echo_client.lua", "ping", "pong"},
                                  {timeout = 30}))
    assert.equal(0, r.status)
    assert.truthy(r.stdout:find("client 3 got: echo: [3] pong", 1, true))
    assert.truthy(r.stdout:find("server said: bye", 1, true))
  end)

  it("leaves nothing open: a script with idle and cancelled streams ends", function()
    local script = [[
      local srv = parx.tcp.listen("127.0.0.1", 0, function(s) parx.sleep(0.1) end)
      local idle = parx.tcp.connect("127.0.0.1", srv.port)
      local c = parx.tcp.connect("127.0.0.1", srv.port)
      local t = parx.async(function() return c:read() end)
      parx.sleep(0.02)
      t:cancel()
      srv:close()
      print("ended")
    ]]
    local r = assert(process.exec(PARX, {"-e", script}, {timeout = 20}))
    assert.equal("ended\n", r.stdout)
    assert.equal(0, r.status)
  end)
end)

describe("parx.tcp bounds (issue 9)", function()
  it("tcp.connect with timeout = math.huge means no limit, and a NaN timeout raises", function()
    local srv = assert(parx.tcp.listen("127.0.0.1", 0, function(s) s:write("hi\n") end))
    local c = assert(parx.tcp.connect("127.0.0.1", srv.port, {timeout = math.huge}))
    assert.equal("hi", c:readline())
    c:close()
    assert.has_error(function() parx.tcp.connect("127.0.0.1", srv.port, {timeout = 0/0}) end)
    srv:close()
  end)

  it("a stream read(n) past the string limit returns nil, EFBIG and keeps the data", function()
    -- The limit (about 2 GiB) is lowered with PARX_TEST_MAX_STRING in a
    -- child parx, so that 1.5 MB are enough to pass it.
    local bin = os.getenv("PARX_BIN") or "build/parx"
    local code = [[
      local srv = parx.tcp.listen("127.0.0.1", 0, function(s)
        s:write(string.rep("x", 1500000))
      end)
      local c = parx.tcp.connect("127.0.0.1", srv.port)
      print(c:read(1200000))
      local n = 0
      while true do
        local s = c:read(500000)
        if not s then break end
        n = n + #s
      end
      print(n)
      c:close()
      srv:close()
    ]]
    local r = assert(parx.process.exec(bin, {"-e", code},
      {env = {PARX_TEST_MAX_STRING = "1000000"}, timeout = 60}))
    assert.equal(0, r.status, r.stderr)
    assert.equal("nil\tEFBIG: file too large: more than one Lua string can hold\tEFBIG\n1500000\n", r.stdout)
  end)
end)
