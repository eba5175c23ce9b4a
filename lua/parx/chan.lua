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
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.chan"
local F = require "parx.chan_fast"

local error, type, rawget = error, type, rawget
local csend, crecv, cselect = C.send, C.recv, C.select
local mt = C.metatable

-- Each operation tries the FFI fast path first (lua/parx/chan_fast.lua),
-- which declines whenever the operation would park, fail or carry anything
-- but a plain scalar; the C function then does it, with its errors.  The
-- fast path takes only proxies the C functions accepted before (F.valid).
-- (F is reached through its module at each call, never kept in a local:
-- a function that holds these methods as upvalues can then still be sent
-- to a worker, where F is that VM's own.)

-- ch:send(v): parks while the channel is full; raises when it is closed.
function mt.send(self, v)
  if F.send(self, v) then return end
  if csend(self, v) == false then raise("send on closed channel") end
  F.valid[self] = true
end

-- ch:recv() -> v, true | nil, false once the channel is closed and drained.
function mt.recv(self)
  local v, ok = F.recv(self)
  if ok then return v, true end
  local err
  v, ok, err = crecv(self)
  if err then raise(err) end
  F.valid[self] = true
  return v, ok
end

local function next_value(self)
  local v, ok = F.recv(self)
  if ok then return v end
  local err
  v, ok, err = crecv(self)
  if err then raise(err) end
  F.valid[self] = true
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

local SELECT_OPTS = options.known{"timeout"}

-- parx.select(cases, opts): cases is a list of {ch, "recv"} and
-- {ch, "send", v}.  Waits until one case can proceed (at most opts.timeout
-- seconds; 0 never waits), chosen at random among the ready ones, and
-- returns its index plus, for a receive, the value and ok flag; on timeout
-- nil, "timeout".
function M.select(cases, opts)
  if type(cases) ~= "table" then
    raise("bad argument #1 to 'select' (table expected, got " .. type(cases) .. ")")
  end
  local timeout
  if opts ~= nil then
    if type(opts) == "number" then
      timeout = opts
    elseif type(opts) == "table" then
      options.check("select", opts, SELECT_OPTS)
      timeout = opts.timeout
    else
      raise("bad argument #2 to 'select' (table expected, got " .. type(opts) .. ")")
    end
  end
  local unknown
  if type(cases) == "table" then
    local i, v, ok = F.select(cases)
    if type(i) == "number" then return i, v, ok end
    if i == "unknown" then -- what cselect is about to check (it may park)
      unknown = {}
      for k = 1, #cases do
        local c = rawget(cases, k)
        unknown[k] = type(c) == "table" and rawget(c, 1) or nil
      end
    end
  end
  local i, v, ok, err = cselect(cases, timeout)
  if unknown then -- cselect accepted them: channels
    for k = 1, #unknown do F.valid[unknown[k]] = true end
  end
  if err then raise(err) end
  if i == nil then return nil, v end
  return i, v, ok
end

return M
