-- parx.dict: a concurrent hash map shared by reference across VMs (the C
-- side is runtime/mod/dict.c, module "parx.c.dict").
--
--   local d = parx.dict()
--   d.hits = 0; d[1] = {x = 1}; print(d.hits, #d)  -- values are copies
--   d:update("hits", function(n) return n + 1 end)  -- atomic
--   for k, v in d:pairs() do ... end                -- insertion order
local C = require "parx.c.dict"

local type, error = type, error
local methods = C.methods
local getv, cas, get, keys = methods._getv, methods._cas, methods.get, methods.keys

-- d:update(k, fn, ...) -> the new value.  fn(old, ...) gets k's value (nil
-- when absent) and returns the new one (nil deletes k).  Atomic as a
-- compare-and-swap: the new value is stored only if nobody wrote k since
-- it was read; otherwise fn runs again with the newer value.  So no update
-- is ever lost, fn may park (it runs on the caller's VM, like any code),
-- and fn may run more than once under contention: keep it free of side
-- effects.
function methods.update(self, k, fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #2 to 'update' (function expected, got " .. type(fn) .. ")", 2)
  end
  while true do
    local old, version = getv(self, k)
    local new = fn(old, ...)
    if cas(self, k, version, new) then return new end
  end
end

-- d:pairs(): for k, v in d:pairs() do ... end.  Iterates over the keys
-- present when it was called, in insertion order, each with its value when
-- the loop reaches it; keys removed meanwhile are skipped.  (LuaJIT's
-- pairs() does not consult __pairs, so pairs(d) itself raises.)
function methods.pairs(self)
  local ks, i = keys(self), 0
  return function()
    while true do
      i = i + 1
      local k = ks[i]
      if k == nil then return nil end
      local v = get(self, k)
      if v ~= nil then return k, v end
    end
  end
end

-- d:values() -> a list of the values, in insertion order (a snapshot).
function methods.values(self)
  local out, n = {}, 0
  for _, v in methods.pairs(self) do
    n = n + 1
    out[n] = v
  end
  return out
end

-- d:copy() -> a plain Lua table with every key and value (a snapshot).
function methods.copy(self)
  local out = {}
  for k, v in methods.pairs(self) do out[k] = v end
  return out
end

-- tostring(d): "parx.dict(N) {k = v, ...}", the first 20 keys in
-- insertion order with their values as parx.pformat shows them (nested
-- tables two levels deep), like numpy's summary of a long array.
local SHOWN = 20
local ctostring = C.metatable.__tostring
local function key_text(k, pformat)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  return "[" .. pformat(k) .. "]"
end
C.metatable.__tostring = function(self)
  local head = ctostring(self):match("^(parx%.dict%(%d+%))")
  local pformat = require("parx.pp").pformat
  local parts, n = {}, 0
  for k, v in methods.pairs(self) do
    if n == SHOWN then parts[n + 1] = "..."; break end
    n = n + 1
    parts[n] = key_text(k, pformat) .. " = " .. pformat(v, {depth = 2, width = 1e9})
  end
  return head .. " {" .. table.concat(parts, ", ") .. "}"
end

C.metatable.__parx_ready = true

return {dict = C.new}
