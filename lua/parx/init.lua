-- parx: the module every VM preloads (and the global `parx` in scripts).
--
-- The task functions come from the core and are loaded at once; everything
-- else loads on first use so that `parx -e ''` pays for nothing it does not
-- touch.  A key maps to the module that provides it: parx.channel is
-- require("parx.chan").channel, parx.fs is require("parx.fs") itself.
local task = require "parx.task"

local parx = {}
for k, v in pairs(task) do parx[k] = v end

local lazy = {
  pool = "parx.pool",
  channel = "parx.chan", select = "parx.chan",
  mutex = "parx.sync", semaphore = "parx.sync", barrier = "parx.sync",
  waitgroup = "parx.sync", atomic = "parx.sync",
  event = "parx.sync", condition = "parx.sync",
  array = "parx.array",
  dict = "parx.dict",
  scope = "parx.scope", is_error_group = "parx.scope",
  pp = "parx.pp", pformat = "parx.pp",
  timer = "parx.timer", every = "parx.timer",
  fs = "parx.fs", tcp = "parx.tcp", udp = "parx.udp", dns = "parx.dns",
  process = "parx.process", signal = "parx.signal", http = "parx.http",
  stdin = "parx.stdin",
  gpu = "parx.gpu",
  progress = "parx.progress",
  trace = "parx.trace", stats = "parx.trace",
}

setmetatable(parx, {
  __index = function(t, k)
    local name = lazy[k]
    if not name then return nil end
    local m = require(name)
    local v = m
    if type(m) == "table" and m[k] ~= nil then v = m[k] end
    rawset(t, k, v)
    return v
  end,
  __lazy = lazy, -- the names above, for the REPL's completion
})

parx.version = "0.1.0"
return parx
