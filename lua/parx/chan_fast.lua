-- parx.chan_fast: the FFI fast path of channels (runtime/mod/chan_fast.c),
-- used by lua/parx/chan.lua.  An FFI call is compiled into the caller's
-- trace; a lua_CFunction call is not.  Each function here completes an
-- operation only when it can at once without parking, and returns nothing
-- otherwise (full, empty, closed, a value that is not a plain scalar): the
-- caller then calls the C function, which waits or raises as it must.
--
-- The C side reads a channel from its proxy's payload, so it is handed
-- only proxies that the C functions accepted before: M.valid (weak keys)
-- holds them.  Anything else never reaches the FFI.
local ffi = require "ffi"
local C = require "parx.c.chan"

local type, rawget = type, rawget
local band, bxor, lshift, rshift = bit.band, bit.bxor, bit.lshift, bit.rshift
local ffi_string = ffi.string

local INLINE = C.fast_inline -- a string shorter than this fits a slot
if not pcall(ffi.typeof, "px_chan_fast_value") then
  ffi.cdef(string.format([[
typedef struct px_chan_fast_value {
  double num;
  int32_t len;
  char str[%d];
} px_chan_fast_value;
typedef struct px_chan_fast_api {
  int (*send_number)(void *proxy, double d, int retry);
  int (*send_string)(void *proxy, const char *s, size_t len, int retry);
  int (*recv)(void *proxy, px_chan_fast_value *out, int retry);
} px_chan_fast_api;
]], INLINE))
end
local api = ffi.cast("const px_chan_fast_api *", C.fast_api)
local send_number, send_string, recv = api.send_number, api.send_string, api.recv
local got = ffi.new("px_chan_fast_value")

local M = {}
local valid = setmetatable({}, {__mode = "k"})
M.valid = valid

-- Send a number or a short string on a known channel: true when done.
-- retry: 1 to retry a full lock-free buffer a few times first (send and
-- recv: the C path would park next), 0 not (select's pass: its other cases).
local function try_send(self, v, retry)
  local tv = type(v)
  if tv == "number" then
    return send_number(self, v, retry) == 1
  elseif tv == "string" and #v < INLINE then
    return send_string(self, v, #v, retry) == 1
  end
  return false
end

function M.send(self, v)
  return valid[self] ~= nil and try_send(self, v, 1)
end

-- Receive a plain scalar from a known channel: v, true, or nothing.
local function try_recv(self, retry)
  local kind = recv(self, got, retry)
  if kind == 1 then return got.num, true end
  if kind == 2 then return ffi_string(got.str, got.len), true end
  if kind == 3 then return false, true end
  if kind == 4 then return true, true end
  if kind == 5 then return nil, true end
end

function M.recv(self)
  if valid[self] then return try_recv(self, 1) end
end

-- The fast pass of parx.select: when every case checks out (a known
-- channel, "recv" or "send"), try them once from a random one (fairness,
-- as the C pass does) and return the first that completes: i, v, true for
-- a receive, i for a send.  Nothing when none did (the C function then does
-- it all again, parking or raising as it must); "unknown" when a case's
-- channel is not known yet.  Cases are read raw, as the C function does.
local seed = 0x2545f491

function M.select(cases)
  local n = #cases
  if n == 0 then return end
  for k = 1, n do
    local c = rawget(cases, k)
    if type(c) ~= "table" then return end
    if not valid[rawget(c, 1)] then return "unknown" end
    local op = rawget(c, 2)
    if op ~= "recv" and op ~= "send" then return end
  end
  local x = seed -- xorshift32
  x = bxor(x, lshift(x, 13))
  x = bxor(x, rshift(x, 17))
  x = bxor(x, lshift(x, 5))
  seed = x
  local i = band(x, 0x7fffffff) % n
  for _ = 1, n do
    i = i + 1
    if i > n then i = 1 end
    local c = rawget(cases, i)
    local ch = rawget(c, 1)
    if rawget(c, 2) == "recv" then
      local v, ok = try_recv(ch, 0)
      if ok then return i, v, true end
    elseif try_send(ch, rawget(c, 3), 0) then
      return i
    end
  end
end

return M
