-- parx.dns: name resolution on libuv's thread pool.
--
--   dns.resolve(host [, opts]) -> {"127.0.0.1", "::1", ...} | nil, msg, code
--
-- opts.family: "inet" (IPv4 only), "inet6" (IPv6 only) or nil (both).
-- A numeric address returns at once without a lookup.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.dns"

local families = { inet = 4, inet6 = 6, ipv4 = 4, ipv6 = 6, [4] = 4, [6] = 6 }

local M = {}

local RESOLVE_OPTS = options.known{"family"}

function M.resolve(host, opts)
  if type(host) ~= "string" then
    raise("bad argument #1 to 'resolve' (string expected, got " .. type(host) .. ")")
  end
  local family = 0
  if opts ~= nil then
    if type(opts) ~= "table" then
      raise("bad argument #2 to 'resolve' (table expected, got " .. type(opts) .. ")")
    end
    options.check("dns.resolve", opts, RESOLVE_OPTS)
    if opts.family ~= nil then
      family = families[opts.family]
      if not family then
        raise("bad argument #2 to 'resolve' (family must be \"inet\" or \"inet6\")")
      end
    end
  end
  return C.resolve(host, family)
end

return M
