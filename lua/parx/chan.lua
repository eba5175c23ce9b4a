-- parx.chan: channels and select (the C side is runtime/mod/chan.c and
-- runtime/mod/select.c, module "parx.c.chan").
--
--   local ch = parx.channel()      -- unbounded
--   local ch = parx.channel(64)    -- bounded: send parks while 64 are queued
--   local ch = parx.channel(0)     -- rendezvous: send parks until received
--   ch:send(v); local v, ok = ch:recv()
--   for v in ch:iter() do ... end  -- until closed and drained
--   local i, v, ok = parx.select({{a, "recv"}, {b, "send", x}}, {timeout = 1})
--
-- A parked operation cannot raise from C once it resumes, so the C
-- functions report "closed" or "could not unmarshal" as extra results and
-- the wrappers below turn them into errors.
local C = require "parx.c.chan"
local ffi = require "ffi"

local error, type = error, type
local csend, crecv, cselect = C.send, C.recv, C.select
local mt = C.metatable

-- The FFI fast path (runtime/mod/chan_fast.c): a send of a number or a
-- short string, a receive of a plain scalar, when it completes at once.
-- An FFI call is compiled into the loop's trace; the C functions above
-- are not.  The fast functions decline (0) whenever the operation would
-- park, fail or carry anything else, and the C function then does it, with
-- its errors.  They take only proxies the C functions accepted before
-- (`valid`, weak keys): anything else would not be a channel's payload.
if not pcall(ffi.typeof, "px_chan_fast_value") then
  ffi.cdef(string.format([[
typedef struct px_chan_fast_value {
  double num;
  int32_t len;
  char str[%d];
} px_chan_fast_value;
typedef struct px_chan_fast_api {
  int (*send_number)(void *proxy, double d);
  int (*send_string)(void *proxy, const char *s, size_t len);
  int (*recv)(void *proxy, px_chan_fast_value *out);
} px_chan_fast_api;
]], C.fast_inline))
end
local fast = ffi.cast("const px_chan_fast_api *", C.fast_api)
local fsend_number, fsend_string, frecv = fast.send_number, fast.send_string, fast.recv
local INLINE = C.fast_inline
local got = ffi.new("px_chan_fast_value")
local ffi_string = ffi.string
local valid = setmetatable({}, {__mode = "k"})

-- Receive through the fast path: the value and true, or nothing (declined).
local function fast_recv(self)
  local kind = frecv(self, got)
  if kind == 1 then return got.num, true end
  if kind == 2 then return ffi_string(got.str, got.len), true end
  if kind == 3 then return false, true end
  if kind == 4 then return true, true end
  if kind == 5 then return nil, true end
end

-- ch:send(v): parks while the channel is full; raises when it is closed.
function mt.send(self, v)
  if valid[self] then
    local tv = type(v)
    if tv == "number" then
      if fsend_number(self, v) == 1 then return end
    elseif tv == "string" and #v < INLINE then
      if fsend_string(self, v, #v) == 1 then return end
    end
  end
  if csend(self, v) == false then error("send on closed channel", 2) end
  valid[self] = true
end

-- ch:recv() -> v, true | nil, false once the channel is closed and drained.
function mt.recv(self)
  if valid[self] then
    local v, ok = fast_recv(self)
    if ok then return v, true end
  end
  local v, ok, err = crecv(self)
  if err then error(err, 2) end
  valid[self] = true
  return v, ok
end

local function next_value(self)
  if valid[self] then
    local v, ok = fast_recv(self)
    if ok then return v end
  end
  local v, ok, err = crecv(self)
  if err then error(err, 2) end
  valid[self] = true
  return v
end

-- for v in ch:iter() do ... end: receives until the channel is closed and
-- drained.  (A nil value ends a for loop in Lua: use recv for channels that
-- carry nil.)
function mt.iter(self)
  return next_value, self
end

-- ch:empty(): whether no value is buffered (#ch == 0), as queue.empty().
function mt.empty(self) return #self == 0 end

mt.__parx_ready = true

local M = {}

-- parx.channel([capacity]): nil or math.huge = unbounded, 0 = rendezvous.
M.channel = C.new

-- parx.select(cases, opts): cases is a list of {ch, "recv"} and
-- {ch, "send", v}.  Waits until one case can proceed (at most opts.timeout
-- seconds; 0 never waits), chosen at random among the ready ones, and
-- returns its index plus, for a receive, the value and ok flag; on timeout
-- nil, "timeout".
function M.select(cases, opts)
  local timeout
  if opts ~= nil then
    if type(opts) == "number" then
      timeout = opts
    elseif type(opts) == "table" then
      timeout = opts.timeout
      for k in pairs(opts) do
        if k ~= "timeout" then
          error("select: unknown option '" .. tostring(k) .. "' (known: timeout)", 2)
        end
      end
    else
      error("bad argument #2 to 'select' (table expected, got " .. type(opts) .. ")", 2)
    end
  end
  local i, v, ok, err = cselect(cases, timeout)
  if err then error(err, 2) end
  if i == nil then return nil, v end
  return i, v, ok
end

return M
