-- parx.udp: datagram sockets.
--
--   udp.bind([host [, port]]) -> socket | nil, msg, code
--     host defaults to "0.0.0.0", port to 0 (an ephemeral port).
--   socket:send(data, host, port) -> true | nil, msg, code
--   socket:recv() -> data, host, port | nil, msg, code
--   socket:close(); socket.port, socket.host
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.udp"
local dns = require "parx.dns"

local M = {}

local methods = C.methods()

-- Numeric addresses go straight through; a name is resolved first, and
-- its first address of the socket's family wins.
function methods.send(self, data, host, port)
  if type(host) ~= "string" then
    raise("bad argument #2 to 'send' (string expected, got " .. type(host) .. ")")
  end
  local addrs, msg, code = dns.resolve(host)
  if not addrs then return nil, msg, code end
  local v6 = self.host:find(":", 1, true) ~= nil
  local pick = addrs[1]
  for _, a in ipairs(addrs) do
    if (a:find(":", 1, true) ~= nil) == v6 then
      pick = a
      break
    end
  end
  return self:sendto(data, pick, port)
end

function M.bind(host, port)
  host = host or "0.0.0.0"
  port = port or 0
  if type(host) ~= "string" then
    raise("bad argument #1 to 'bind' (string expected, got " .. type(host) .. ")")
  end
  if type(port) ~= "number" then
    raise("bad argument #2 to 'bind' (number expected, got " .. type(port) .. ")")
  end
  local addrs, msg, code = dns.resolve(host)
  if not addrs then return nil, msg, code end
  return C.bind(addrs[1], port)
end

return M
