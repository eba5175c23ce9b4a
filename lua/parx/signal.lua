-- parx.signal: Unix signals delivered to Lua handlers.
--
--   parx.signal(name, handler) -> Signal
--       name: "int", "term", "hup", "usr1", "usr2", "winch", ... (also
--       "SIGINT", "sigint" or a number).  handler(name) runs as a new task
--       of this VM (parx.async semantics) each time the signal arrives;
--       deliveries that arrive while one is still queued are merged.
--   sig:stop()   -> true if it was installed; the default action returns
--                   once no handler of that signal is left
--   sig:active() -> whether it is installed
--
-- A handler does not keep the script running: when everything else is done
-- the script ends.  Without a handler Ctrl-C (SIGINT) and SIGTERM end the
-- process as usual.  SIGKILL and SIGSTOP cannot be handled.
local C = require "parx.c.signal"

local async = require("parx.task").async
local type, error, pcall = type, error, pcall

local entries = {} -- id -> {sig = Signal, fn = handler, name = name}
local running = false

local function dispatch_loop()
  local next_id = C.next
  while true do
    local id = next_id()
    if id == nil then return end
    if id then
      local e = entries[id]
      if e ~= nil then async(e.fn, e.name) end
    end
  end
end

local function dispatcher()
  local ok, err = pcall(dispatch_loop)
  running = false
  if not ok then error(err, 0) end
end

local Signal = C.methods
local cstop = Signal.stop

function Signal.stop(s)
  local was = cstop(s)
  entries[s:id()] = nil
  return was
end

local M = {}

function M.signal(name, handler)
  if type(handler) ~= "function" then
    local mt = getmetatable(handler)
    if not (type(mt) == "table" and mt.__call) then
      error("bad argument #2 to 'signal' (function expected, got " .. type(handler) .. ")", 2)
    end
  end
  local s, id, signame = C.new(name)
  if s == nil then return nil, id, signame end
  entries[id] = {sig = s, fn = handler, name = signame}
  if not running then
    running = true
    async(dispatcher)
  end
  return s
end

return M
