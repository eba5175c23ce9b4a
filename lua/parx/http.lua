-- parx.http: an HTTP(S) client on libcurl's multi interface, driven by the
-- VM's loop: a request parks its task, and hundreds run at once in one VM.
--
--   http.request{method, url, headers, body, timeout, follow, verify,
--                max_size, protocols, cafile, capath, cert, key, proxy,
--                noproxy, sink}
--     -> {status, headers, body, url} | nil, msg, code
--   http.get(url [, opts]), http.post(url, body [, opts])
--
-- headers: {["Content-Type"] = "text/plain"} (response header names come
-- back in lower case, repeated ones joined with ", " except set-cookie,
-- always a list); cafile/capath/cert/key: TLS trust and client
-- certificate files; proxy/noproxy: libcurl's proxy settings; timeout in seconds for the whole transfer
-- (math.huge or absent: no limit); follow (default true) follows
-- redirects; verify (default true) checks TLS certificates; max_size
-- (default 1 GiB, at most the Lua string limit of about 2 GiB) bounds the
-- body after decompression: past it the transfer stops and the request
-- returns nil, "EFBIG: ...", "EFBIG"; protocols (default {"http",
-- "https"}) lists the URL schemes allowed, for the URL and redirects, and
-- a redirect never goes to file://.  An HTTP error status is a response,
-- not an error: check resp.status.  Errors: nil, msg, code (ECONNREFUSED,
-- ETIMEDOUT, EAI_NONAME, EFBIG, EPROTONOSUPPORT for a scheme not allowed,
-- HTTP for other transfer failures).
--
-- sink streams the body instead of returning it (the response then has no
-- body field), in constant memory whatever its size: a function is called
-- with each chunk (strings of up to 64 KiB, in order) on the
-- calling task, and an error it raises stops the transfer and is raised
-- by the request; a string is a file path, created or truncated, written
-- as the body arrives (what arrived stays there if the transfer fails).
-- With a sink, max_size is unlimited unless given.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.http"

local M = {}

local next_chunk, abort = C.next, C.abort
local SLACK_KB = 8192

-- The request; a function sink's chunks are taken from the transfer
-- (parked while none is there) and handed to it here, on this task.
local function run(req)
  local sink = req.sink
  if type(sink) ~= "function" then return C.request(req) end
  local t, msg, code = C.request(req)
  if not t then return nil, msg, code end
  local base = collectgarbage("count")
  while true do
    local v, vmsg, vcode = next_chunk(t)
    if type(v) ~= "string" then return v, vmsg, vcode end
    local ok, err = pcall(sink, v)
    if not ok then
      abort(t)
      error(err, 0)
    end
    -- LuaJIT's collector advances per allocation, not per byte: left to
    -- itself it lets these big chunks pile up (about 50 MB over a 1 GB
    -- body).  Each SLACK_KB of growth, collect until it is paid back.
    v = nil
    local kb = collectgarbage("count")
    if kb > base + SLACK_KB then
      collectgarbage("step", kb - base)
      base = collectgarbage("count")
    end
  end
end

-- The options of request; get and post take the same but url (and post
-- body), which are their arguments.  The C side reads them
-- (runtime/io/http_opts.c), which checks request's names too.
local REQUEST_NAMES = {"body", "cafile", "capath", "cert", "follow", "headers", "key", "max_size",
                       "method", "noproxy", "protocols", "proxy", "sink", "timeout", "url", "verify"}
local function known_but(...)
  local drop, names = {}, {}
  for i = 1, select("#", ...) do drop[select(i, ...)] = true end
  for _, n in ipairs(REQUEST_NAMES) do
    if not drop[n] then names[#names + 1] = n end
  end
  return options.known(names)
end
local GET_OPTS, POST_OPTS = known_but("url"), known_but("url", "body")

function M.request(opts)
  if type(opts) ~= "table" then
    raise("bad argument #1 to 'request' (table expected, got " .. type(opts) .. ")")
  end
  return run(opts)
end

local function with(url, opts, fname, known)
  if type(url) ~= "string" then
    raise("bad argument #1 to '" .. fname .. "' (string expected, got " .. type(url) .. ")")
  end
  local req = { url = url }
  if opts ~= nil then
    if type(opts) ~= "table" then
      raise("bad argument #2 to '" .. fname .. "' (table expected, got " .. type(opts) .. ")")
    end
    options.check("http." .. fname, opts, known)
    for k, v in pairs(opts) do req[k] = v end
    req.url = url
  end
  return req
end

function M.get(url, opts)
  local req = with(url, opts, "get", GET_OPTS)
  req.method = req.method or "GET"
  return run(req)
end

function M.post(url, body, opts)
  local req = with(url, opts, "post", POST_OPTS)
  req.method = req.method or "POST"
  req.body = body
  return run(req)
end

M.info = C.info

return M
