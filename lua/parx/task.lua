-- parx.task: spawn/async/join and the functions built on the core's waits
-- (gather, wait, as_completed, timeout).  Loaded in every VM at start.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local c = require "parx.c.task"

local Task = c.Task
local cjoin, wait_any = c.join, c.wait_any
local error, select, type, unpack = error, select, type, unpack

-- The error a cancelled task unwinds with (see "Cancellation" at the end),
-- made by the core (runtime/core/state.c).
local CANCELLED = c.CANCELLED

local M = {CANCELLED = CANCELLED}
package.loaded["parx.CANCELLED"] = CANCELLED -- crosses VMs as the receiver's own

-- Tracebacks of the errors join re-raised on this VM, for
-- parx.traceback(err): a table or other object error by identity (weak
-- keys); a string by value, the last few (a string cannot be told apart
-- from an equal one, so this is the traceback of the latest task error
-- equal to it).
local by_object = setmetatable({}, {__mode = "k"})
local by_string, string_order, STRINGS = {}, {}, 16

local function remember(t, err)
  local tb = t:traceback()
  if not tb then return end
  if type(err) == "string" then
    if by_string[err] == nil then
      string_order[#string_order + 1] = err
      if #string_order > STRINGS then by_string[table.remove(string_order, 1)] = nil end
    end
    by_string[err] = tb
  elseif err ~= nil and type(err) ~= "number" and type(err) ~= "boolean" then
    by_object[err] = tb
  end
end

-- Raise a failed task's error as it was raised (level 0: no position of
-- ours is added), its traceback kept for parx.traceback.
local function raise_task(t, ok, ...)
  if not ok then
    local err = ...
    if err ~= CANCELLED then remember(t, err) end
    error(err, 0)
  end
  return ...
end

-- parx.traceback(err) -> the traceback ("stack traceback:\n...") of the
-- task error err that join (or gather, result, timeout) raised on this VM,
-- or nil.
function M.traceback(err)
  if type(err) == "string" then return by_string[err] end
  if err == nil or type(err) == "number" or type(err) == "boolean" then return nil end
  return by_object[err]
end

-- A timeout in seconds, checked as px_timeout_ms does (runtime/core/px.h):
-- nil or math.huge = no limit, NaN raises, negative counts as 0.
local function check_timeout(v, fname)
  if v == nil then return nil end
  if type(v) ~= "number" then raise(fname .. ": timeout must be a number") end
  if v ~= v then raise(fname .. ": timeout is NaN (use math.huge for no limit)") end
  return v
end

-- Task methods ------------------------------------------------------------

function Task.join(t) return raise_task(t, cjoin(t)) end
function Task.on_done(t, fn) return require("parx.scope").on_done(t, fn) end

function Task.wait(t, timeout)
  check_timeout(timeout, "wait")
  return wait_any({t}, timeout) ~= nil
end

-- result(timeout): the results, or nil, "timeout".
function Task.result(t, timeout)
  check_timeout(timeout, "result")
  if wait_any({t}, timeout) == nil then return nil, "timeout" end
  return raise_task(t, cjoin(t))
end

M.spawn = c.spawn
M.async = c.async
M.sleep = c.sleep
M.now = c.now
M.current = c.current
M.register_type = c.register_type

-- debug.getmetatable: parx metatables hide behind __metatable (shared.c).
local is_task = c.is_task -- C-side: parx's metatables are protected

-- The tasks of gather, wait and as_completed: list[1 .. n] must all be
-- tasks (checked before any is waited for).  argn: the argument number of
-- the list, or nil when they are arguments of their own.
local function check_tasks(fname, list, n, argn)
  for i = 1, n do
    local t = list[i]
    if not is_task(t) then
      if argn then
        raise(("bad argument #%d to '%s' (item %d is not a task: %s)"):format(argn, fname, i, type(t)))
      end
      raise(("bad argument #%d to '%s' (task expected, got %s)"):format(i, fname, type(t)))
    end
  end
end
M._check_tasks = check_tasks

-- Cancel the tasks and wait until each has ended, so that their cleanup
-- has run (as Trio's nurseries and asyncio's wait_for do).  When the
-- caller is cancelled meanwhile, it stops waiting at once.
local function cancel_and_wait(tasks)
  for _, t in ipairs(tasks) do t:cancel() end
  for _, t in ipairs(tasks) do
    if not t:done() then wait_any({t}) end
  end
end

-- gather(t1, t2, ...) -> the first result of each, in order; or
-- gather({t1, t2, ...}) -> a list of them.  The first error raised by any
-- task is raised here and the tasks still running are cancelled.
function M.gather(...)
  local nargs = select("#", ...)
  local opts = nargs > 1 and select(nargs, ...)
  if type(opts) == "table" and not is_task(opts) and opts[1] == nil then
    return require("parx.scope").gather(opts, unpack({...}, 1, nargs - 1))
  end
  local list, as_table = {...}, false
  if select("#", ...) == 1 and not is_task(list[1]) and type(list[1]) == "table" then
    list, as_table = list[1], true
  end
  local n = #list
  check_tasks("parx.gather", list, n, as_table and 1)
  local pending = {}
  for i = 1, n do pending[i] = list[i] end
  while #pending > 0 do
    local ok, k = pcall(wait_any, pending)
    if not ok then
      -- gather itself was cancelled (or failed): so are its tasks.
      for _, other in ipairs(pending) do other:cancel() end
      error(k, 0)
    end
    local t = pending[k]
    if t:status() ~= "done" then
      table.remove(pending, k)
      cancel_and_wait(pending)
      raise_task(t, cjoin(t))
    end
    table.remove(pending, k)
  end
  local out = {}
  for i = 1, n do out[i] = (raise_task(list[i], cjoin(list[i]))) end
  if as_table then return out end
  return unpack(out, 1, n)
end

local function check_list(fname, tasks)
  if type(tasks) ~= "table" then
    raise(("bad argument #1 to '%s' (table of tasks expected, got %s)"):format(fname, type(tasks)))
  end
  check_tasks(fname, tasks, #tasks, 1)
end

local WAIT_OPTS = options.known{"any", "timeout"}
local AS_COMPLETED_OPTS = options.known{"timeout"}

-- wait(tasks, {timeout = s, any = bool}) -> done, pending (lists of tasks)
function M.wait(tasks, opts)
  check_list("parx.wait", tasks)
  opts = options.check_table("parx.wait", 2, opts, WAIT_OPTS) or {}
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
  check_list("parx.as_completed", tasks)
  options.check_table("parx.as_completed", 2, opts, AS_COMPLETED_OPTS)
  local pending = {}
  for i = 1, #tasks do pending[i] = tasks[i] end
  local timeout = check_timeout(opts and opts.timeout, "parx.as_completed")
  local deadline = timeout and (c.now() + timeout)
  return function()
    if #pending == 0 then return nil end
    local k = wait_any(pending, deadline and math.max(0, deadline - c.now()))
    if not k then raise("parx.as_completed: timeout") end
    return table.remove(pending, k)
  end
end

-- timeout(seconds, fn, ...) -> fn's results, or nil, "timeout" (fn is
-- then cancelled).  fn runs as an async task of this VM.
-- The cancelled fn has ended (its cleanup ran) when timeout returns; an
-- error its cleanup raised is raised here.  When the caller is cancelled
-- while it waits, fn is cancelled too.
function M.timeout(seconds, fn, ...)
  check_timeout(seconds, "parx.timeout")
  options.check_callable("parx.timeout", 2, fn)
  local t = c.async(fn, ...)
  local ok, k = pcall(wait_any, {t}, seconds)
  if not ok then
    t:cancel()
    error(k, 0)
  end
  if k == nil then
    cancel_and_wait({t})
    if t:status() == "failed" then raise_task(t, cjoin(t)) end
    return nil, "timeout"
  end
  return raise_task(t, cjoin(t))
end

-- Cancellation (as in Trio and asyncio).  A cancelled task gets CANCELLED
-- raised at its park point (or, when it was not parked, at its next one).
-- It unwinds like any error through LuaJIT's own pcall and xpcall (an
-- xpcall's handler sees it like any error), so cleanup code after them runs
-- (m:with, s:with, a stream's close).  Every later park point of the task
-- raises it again at once (px_check_can_park), and the task ends cancelled
-- whatever its function returns (runtime/core/sched.c).  coroutine.resume
-- and wrap forward a park inside a coroutine to the task, and os.exit's
-- marker cannot be caught: both in C (runtime/core/lib_base.c).

return M
