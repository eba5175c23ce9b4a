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
local type, error = type, error

-- id -> {handler, n = 1, name}: the installed handlers, as dispatch entries
-- (each delivery runs handler(name) as a task of its own).
local entries = {}
-- id -> Signal userdata: an installed handler stays installed when the
-- script drops its Signal object.
local anchors = {}

-- Queued by id: a handler stopped before its turn does not run.
local function take(id)
  if entries[id] ~= nil then return id end
end

local start_dispatcher = dispatch(C.next, C.poll, take, entries)

local Signal = C.methods
local cstop = Signal.stop

function Signal.stop(s)
  local was = cstop(s)
  local id = s:id()
  entries[id] = nil
  anchors[id] = nil
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
  entries[id] = {handler, n = 1, signame}
  anchors[id] = s
  start_dispatcher()
  return s
end

return M
