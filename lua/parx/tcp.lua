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
local C = require "parx.c.tcp"
local dns = require "parx.dns"
local task = require "parx.task"

local M = {}

local function check_host_port(fname, host, port)
  if type(host) ~= "string" then
    error("bad argument #1 to '" .. fname .. "' (string expected, got " .. type(host) .. ")", 3)
  end
  if type(port) ~= "number" or port ~= math.floor(port) or port < 0 or port > 65535 then
    error("bad argument #2 to '" .. fname .. "' (port must be an integer in 0..65535)", 3)
  end
end

-- Try each address the name resolves to, in order, until one connects;
-- the timeout covers the lookup and all attempts together.
function M.connect(host, port, opts)
  check_host_port("connect", host, port)
  local timeout
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #3 to 'connect' (table expected, got " .. type(opts) .. ")", 2)
    end
    timeout = opts.timeout
    if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
      error("bad argument #3 to 'connect' (timeout must be a non-negative number)", 2)
    end
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

function M.listen(host, port, handler, opts)
  check_host_port("listen", host, port)
  if type(handler) ~= "function" then
    local mt = getmetatable(handler)
    if not (mt and mt.__call) then
      error("bad argument #3 to 'listen' (function expected, got " .. type(handler) .. ")", 2)
    end
  end
  local backlog
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #4 to 'listen' (table expected, got " .. type(opts) .. ")", 2)
    end
    backlog = opts.backlog
    if backlog ~= nil and (type(backlog) ~= "number" or backlog < 1) then
      error("bad argument #4 to 'listen' (backlog must be a positive number)", 2)
    end
  end
  local bindhost = host
  if host == "*" or host == "" then bindhost = "0.0.0.0" end
  local addrs, msg, code = dns.resolve(bindhost)
  if not addrs then return nil, msg, code end
  local server
  server, msg, code = C.listen(addrs[1], port, backlog)
  if not server then return nil, msg, code end
  task.async(function()
    while true do
      local stream, _, code = server:accept()
      if stream then
        task.async(serve, handler, stream)
      elseif code == "CLOSED" then
        return
      end
      -- Other accept errors (EMFILE...) concern one connection: go on.
    end
  end)
  return server
end

return M
