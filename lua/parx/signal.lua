-- parx.signal: Unix signals delivered to Lua handlers.
--
--   parx.signal(name, handler) -> Signal
--       name: "int", "term", "hup", "usr1", "usr2", "winch", ... (also
--       "SIGINT", "sigint" or a number).  handler(name) runs in a task of
--       this VM each time the signal arrives, the way timer callbacks run
--       (lua/parx/dispatch.lua); deliveries that arrive while one is still
--       queued are merged.
--   sig:stop()   -> true if it was installed; the default action returns
--                   once no handler of that signal is left
--   sig:active() -> whether it is installed
--
-- A handler does not keep the script running: when everything else is done
-- the script ends.  Without a handler Ctrl-C (SIGINT) and SIGTERM end the
-- process as usual.  SIGKILL and SIGSTOP cannot be handled.
local C = require "parx.c.signal"

local dispatch = require "parx.dispatch"

local entries -- the dispatcher's: id -> {handler, n = 1, name}

-- Queued by id: a handler stopped before its turn does not run.  Each
-- delivery runs handler(name) in a task; the dispatcher anchors the Signal
-- userdata, so a handler stays installed when the script drops it.
local function take(id)
  if entries[id] ~= nil then return id end
end

local d = dispatch(C, take)
entries = d.entries

local raise = require("parx.opts").error
local M = {}

function M.signal(name, handler)
  dispatch.check_callable(handler, "signal")
  -- A bad name raises in C.new: raise it at the user's line instead of here.
  local ok, s, id, signame = pcall(C.new, name)
  if not ok then
    raise((tostring(s):gsub("^[^:]*parx/signal%.lua:%d+: ", ""):gsub("to '[^']*'", "to 'signal'", 1)))
  end
  if s == nil then return nil, id, signame end
  d.add(id, s, {handler, n = 1, signame})
  return s
end

return M
