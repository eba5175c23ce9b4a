-- parx.tcp: TCP clients and servers whose calls park the task, not the
-- thread.
--
--   tcp.connect(host, port [, {timeout = s}]) -> stream | nil, msg, code
--   tcp.listen(host, port, handler [, {backlog = n}]) -> server | nil, msg, code
--
-- A stream has read([n]), readline(), write(data), shutdown(), close(),
-- peername(), sockname(); reads return nil at the end of the stream.
-- read(n) returns n bytes (fewer only at the end), read() whatever has
-- arrived; readline() strips "\n" or "\r\n" and refuses lines over 8 MiB
-- (ENOBUFS).  write() parks while the peer is not taking the data.
-- listen() runs handler(stream) in a new task of this VM for every
-- connection and closes the stream when the handler returns; server.port is
-- the bound port (useful with port 0), server:close() stops accepting.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.tcp"
local dns = require "parx.dns"
local task = require "parx.task"

local M = {}

local function check_host_port(fname, host, port)
  if type(host) ~= "string" then
    raise("bad argument #1 to '" .. fname .. "' (string expected, got " .. type(host) .. ")")
  end
  if type(port) ~= "number" or port ~= math.floor(port) or port < 0 or port > 65535 then
    raise("bad argument #2 to '" .. fname .. "' (port must be an integer in 0..65535)")
  end
end

-- Try each address the name resolves to, in order, until one connects;
-- the timeout covers the lookup and all attempts together.
local CONNECT_OPTS = options.known{"timeout"}
local LISTEN_OPTS = options.known{"backlog", "workers"}

function M.connect(host, port, opts)
  check_host_port("connect", host, port)
  local timeout
  if opts ~= nil then
    if type(opts) ~= "table" then
      raise("bad argument #3 to 'connect' (table expected, got " .. type(opts) .. ")")
    end
    options.check("tcp.connect", opts, CONNECT_OPTS)
    timeout = opts.timeout
    if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
      raise("bad argument #3 to 'connect' (timeout must be a non-negative number)")
    end
    if timeout == math.huge then timeout = nil end -- no limit
  end
  local deadline = timeout and C.clock() + timeout
  local addrs, msg, code
  if timeout then
    -- The lookup counts against the timeout too (a resolver that does not
    -- answer would otherwise hold the caller for its own retries).
    addrs, msg, code = task.timeout(timeout, dns.resolve, host)
    if not addrs and msg == "timeout" and code == nil then
      return C.connect("127.0.0.1", port, 0) -- nil, "ETIMEDOUT: ...", "ETIMEDOUT"
    end
  else
    addrs, msg, code = dns.resolve(host)
  end
  if not addrs then return nil, msg, code end
  for i, ip in ipairs(addrs) do
    local left = deadline and deadline - C.clock()
    if left and left <= 0 then left = 0 end
    local s
    s, msg, code = C.connect(ip, port, left)
    if s then return s end
    if code == "ETIMEDOUT" then break end
  end
  if not msg then return nil, "EAI_NONAME: no address for " .. host, "EAI_NONAME" end
  return nil, msg, code
end

-- The connection task: the handler owns the stream while it runs.
local function serve(handler, stream)
  local ok, err = pcall(handler, stream)
  stream:close()
  if not ok then error(err, 0) end
end

-- Bind ip:port in this VM and run the accept loop in a task of its own.
local function listen_here(ip, port, handler, backlog, reuseport)
  local server, msg, code = C.listen(ip, port, backlog, reuseport)
  if not server then return nil, msg, code end
  task.async(function()
    while true do
      local stream, _, err = server:accept()
      if stream then
        task.async(serve, handler, stream)
      elseif err == "CLOSED" then
        return
      end
      -- Other accept errors (EMFILE...) concern one connection: go on.
    end
  end)
  return server
end
M._listen_here = listen_here

-- A listener in this VM plus one on each of n workers, all bound to the
-- same address with SO_REUSEPORT: the kernel spreads the connections.
local Group = {}
Group.__index = Group

function Group:close()
  if not self.closed then
    self.closed = true
    self._server:close()
    self._stop:close() -- each worker's listener task closes its socket
  end
  return true
end

Group.__tostring = function(self)
  return ("parx.tcp.server (%s port %d, this VM and %d workers%s)"):format(
    self.host, self.port, self.workers, self.closed and ", closed" or "")
end

local function worker_listener(ip, port, handler, backlog, stop, ready)
  local s, msg, code = require("parx.tcp")._listen_here(ip, port, handler, backlog, true)
  ready:send({s ~= nil, msg, code})
  if not s then return end
  stop:recv() -- until the group is closed
  s:close()
end

local function listen_everywhere(ip, port, handler, backlog, n)
  local chan = require "parx.chan"
  local server, msg, code = listen_here(ip, port, handler, backlog, true)
  if not server then return nil, msg, code end
  local stop, ready = chan.channel(), chan.channel()
  for _ = 1, n do
    task.spawn(worker_listener, ip, server.port, handler, backlog, stop, ready)
  end
  local failed
  for _ = 1, n do
    local r = ready:recv()
    if not r[1] then failed = failed or r end
  end
  local group = setmetatable({port = server.port, host = server.host, workers = n,
                              closed = false, _server = server, _stop = stop}, Group)
  if failed then
    group:close()
    return nil, failed[2], failed[3]
  end
  return group
end

-- opts.workers: true (every worker) or a count: also listen on that many
-- worker VMs (SO_REUSEPORT); the handler is then copied to those VMs like
-- a function given to parx.spawn.
function M.listen(host, port, handler, opts)
  check_host_port("listen", host, port)
  if type(handler) ~= "function" then
    local mt = getmetatable(handler)
    if not (mt and mt.__call) then
      raise("bad argument #3 to 'listen' (function expected, got " .. type(handler) .. ")")
    end
  end
  local backlog, workers
  if opts ~= nil then
    if type(opts) ~= "table" then
      raise("bad argument #4 to 'listen' (table expected, got " .. type(opts) .. ")")
    end
    options.check("tcp.listen", opts, LISTEN_OPTS)
    backlog = opts.backlog
    if backlog ~= nil and (type(backlog) ~= "number" or backlog < 1) then
      raise("bad argument #4 to 'listen' (backlog must be a positive number)")
    end
    workers = opts.workers
    if workers == true then
      workers = require("parx.pool").size()
    elseif workers ~= nil and workers ~= false and
           (type(workers) ~= "number" or workers < 0 or workers ~= math.floor(workers)) then
      raise("bad argument #4 to 'listen' (workers must be true or a count)")
    end
  end
  local bindhost = host
  if host == "*" or host == "" then bindhost = "0.0.0.0" end
  local addrs, msg, code = dns.resolve(bindhost)
  if not addrs then return nil, msg, code end
  if workers and workers > 0 then
    return listen_everywhere(addrs[1], port, handler, backlog, workers)
  end
  return listen_here(addrs[1], port, handler, backlog, false)
end

return M
