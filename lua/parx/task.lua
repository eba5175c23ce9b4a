-- parx.task: spawn/async/join and the functions built on the core's waits
-- (gather, wait, as_completed, timeout).  Loaded in every VM at start.
local c = require "parx.c.task"

local Task = c.Task
local cjoin, wait_any, cancelling = c.join, c.wait_any, c.cancelling
local PARK, EXIT = c.PARK, c.EXIT
local error, select, type, unpack = error, select, type, unpack

-- The error a cancelled task unwinds with.  Only the task being cancelled
-- cannot catch it; a joiner can.
local CANCELLED = setmetatable({}, {
  __tostring = function() return "parx: task was cancelled" end,
})
c.set_cancelled(CANCELLED)

local M = {CANCELLED = CANCELLED}

local function raise_if(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

-- Task methods ------------------------------------------------------------

function Task.join(t) return raise_if(cjoin(t)) end

function Task.wait(t, timeout)
  return wait_any({t}, timeout) ~= nil
end

-- result(timeout): the results, or nil, "timeout".
function Task.result(t, timeout)
  if wait_any({t}, timeout) == nil then return nil, "timeout" end
  return raise_if(cjoin(t))
end

M.spawn = c.spawn
M.async = c.async
M.sleep = c.sleep
M.now = c.now
M.current = c.current

local function is_task(v) return getmetatable(v) == Task end

-- gather(t1, t2, ...) -> the first result of each, in order; or
-- gather({t1, t2, ...}) -> a list of them.  The first error raised by any
-- task is raised here and the tasks still running are cancelled.
function M.gather(...)
  local list, as_table = {...}, false
  if select("#", ...) == 1 and not is_task(list[1]) and type(list[1]) == "table" then
    list, as_table = list[1], true
  end
  local n = #list
  local pending, idx = {}, {}
  for i = 1, n do pending[i] = list[i]; idx[i] = i end
  while #pending > 0 do
    local k = wait_any(pending)
    local t = pending[k]
    if t:status() ~= "done" then
      for _, other in ipairs(pending) do if other ~= t then other:cancel() end end
      raise_if(cjoin(t))
    end
    table.remove(pending, k)
    table.remove(idx, k)
  end
  local out = {}
  for i = 1, n do out[i] = (raise_if(cjoin(list[i]))) end
  if as_table then return out end
  return unpack(out, 1, n)
end

-- A timeout in seconds, checked as px_timeout_ms does (runtime/core/px.h):
-- nil or math.huge = no limit, NaN raises, negative counts as 0.
local function check_timeout(v, fname)
  if v == nil then return nil end
  if type(v) ~= "number" then error(fname .. ": timeout must be a number", 3) end
  if v ~= v then error(fname .. ": timeout is NaN (use math.huge for no limit)", 3) end
  return v
end

-- wait(tasks, {timeout = s, any = bool}) -> done, pending (lists of tasks)
function M.wait(tasks, opts)
  opts = opts or {}
  local timeout = check_timeout(opts.timeout, "parx.wait")
  local deadline = timeout and (c.now() + timeout)
  local done, pending = {}, {}
  for i = 1, #tasks do pending[i] = tasks[i] end
  while #pending > 0 do
    local left = deadline and math.max(0, deadline - c.now())
    local k = wait_any(pending, left)
    if not k then break end
    done[#done + 1] = table.remove(pending, k)
    if opts.any then break end
  end
  return done, pending
end

-- for t in as_completed(tasks) do ... end: tasks in the order they finish.
function M.as_completed(tasks, opts)
  local pending = {}
  for i = 1, #tasks do pending[i] = tasks[i] end
  local timeout = check_timeout(opts and opts.timeout, "parx.as_completed")
  local deadline = timeout and (c.now() + timeout)
  return function()
    if #pending == 0 then return nil end
    local k = wait_any(pending, deadline and math.max(0, deadline - c.now()))
    if not k then error("parx.as_completed: timeout", 2) end
    return table.remove(pending, k)
  end
end

-- timeout(seconds, fn, ...) -> fn's results, or nil, "timeout" (fn is
-- then cancelled).  fn runs as an async task of this VM.
function M.timeout(seconds, fn, ...)
  check_timeout(seconds, "parx.timeout")
  local t = c.async(fn, ...)
  if wait_any({t}, seconds) == nil then
    t:cancel()
    return nil, "timeout"
  end
  return raise_if(cjoin(t))
end

-- Every VM: pcall/xpcall cannot swallow the cancellation of the running
-- task or os.exit; coroutines created inside a task forward parks to it.
local raw_pcall, raw_xpcall = pcall, xpcall
local function special(e)
  return e == EXIT or (e == CANCELLED and cancelling())
end
local function check(ok, ...)
  if not ok and special((...)) then error((...), 0) end
  return ok, ...
end
function pcall(f, ...) return check(raw_pcall(f, ...)) end
function xpcall(f, handler, ...)
  return check(raw_xpcall(f, function(e)
    if special(e) then return e end
    return handler(e)
  end, ...))
end
-- Every VM has its own: the marshaller sends a value of package.loaded by
-- name, so a function sent to a worker that calls pcall gets the worker's.
package.loaded["parx.pcall"], package.loaded["parx.xpcall"] = pcall, xpcall

local raw_resume, raw_yield, co_status = coroutine.resume, coroutine.yield, coroutine.status
local function forward(co, ok, a, ...)
  if ok and a == PARK and co_status(co) == "suspended" then
    return forward(co, raw_resume(co, raw_yield(PARK)))
  end
  if not ok and special(a) then error(a, 0) end
  return ok, a, ...
end
function coroutine.resume(co, ...) return forward(co, raw_resume(co, ...)) end
function coroutine.wrap(f)
  local co = coroutine.create(f)
  return function(...)
    return raise_if(coroutine.resume(co, ...))
  end
end

os.exit = c.exit

return M
