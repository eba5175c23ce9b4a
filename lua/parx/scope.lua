-- parx.scope: structured concurrency (as asyncio's TaskGroup and Trio's
-- nursery), and gather's {return_errors = true} form.
--
--   local a, b = parx.scope(function(s)
--     local t1 = s:spawn(work, 1)        -- on a worker VM
--     local t2 = s:async(fetch, url)     -- on this VM
--     return "body's results"
--   end)
--
-- The scope waits for every task started in it.  The first failure
-- cancels the rest and waits for them to end (their cleanup runs); then
-- scope raises an error group: `.errors` lists every failure, in the
-- order they happened, each {task = t, error = value, traceback = text}.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise, check = options.error, options.check
local c = require "parx.c.task"

local wait_any, cjoin, is_task = c.wait_any, c.join, c.is_task
local error, pcall, select, setmetatable, tostring, type, unpack =
  error, pcall, select, setmetatable, tostring, type, unpack

local M = {}

-- The traceback of a task's error, when the runtime keeps one apart from
-- the value (t:traceback(), parx.traceback); nil otherwise.
local function traceback_of(t, err)
  if t and t.traceback then
    local ok, tb = pcall(t.traceback, t)
    if ok and tb then return tb end
  end
  local task = require "parx.task"
  if task.traceback then return task.traceback(err) end
  return nil
end

-- Error groups ---------------------------------------------------------------

local ErrorGroup = {}
ErrorGroup.__index = ErrorGroup

function ErrorGroup.__tostring(g)
  local lines = {("parx.scope: %d task%s failed"):format(#g.errors, #g.errors == 1 and "" or "s")}
  for i, e in ipairs(g.errors) do
    local who = e.task and tostring(e.task) or "the scope's body"
    lines[#lines + 1] = ("[%d] %s: %s"):format(i, who, tostring(e.error))
    if e.traceback then lines[#lines + 1] = (e.traceback:gsub("\n", "\n    ")) end
  end
  return table.concat(lines, "\n")
end
M.ErrorGroup = ErrorGroup -- a group crosses VMs as one: its metatable is found by this path

-- parx.is_error_group(v): whether v is an error group a scope raised.
function M.is_error_group(v)
  return type(v) == "table" and getmetatable(v) == ErrorGroup
end

-- Scopes -----------------------------------------------------------------------

local Scope = {}
Scope.__index = Scope

local function start(s, how, name, ...)
  if s.closed then raise("parx.scope: the scope has ended; start tasks inside its function") end
  options.check_fn(name, ...)
  local t = how(...)
  s.tasks[#s.tasks + 1] = t
  return t
end

-- s:spawn([opts,] fn, ...) / s:async([opts,] fn, ...): as parx.spawn and
-- parx.async, and the scope waits for the task.
function Scope.spawn(s, ...) return start(s, require("parx").spawn, "spawn", ...) end
function Scope.async(s, ...) return start(s, require("parx").async, "async", ...) end

-- s:cancel(): cancel every task of the scope (the scope then ends without
-- raising for them).
function Scope.cancel(s)
  s.cancelled = true
  for _, t in ipairs(s.tasks) do t:cancel() end
end

function Scope.tasks_list(s)
  local out = {}
  for i, t in ipairs(s.tasks) do out[i] = t end
  return out
end

local function pending_of(s)
  local pending = {}
  for _, t in ipairs(s.tasks) do
    if not t:done() then pending[#pending + 1] = t end
  end
  return pending
end

local function record(s, t, err)
  s.errors[#s.errors + 1] = {task = t, error = err, traceback = traceback_of(t, err)}
end

-- Wait until every task of s has ended; the first failure cancels the
-- others.  Tasks that the tasks themselves start in s (s:async from a
-- child on this VM) are waited for too.
local function wait_all(s)
  local seen = {}
  while true do
    -- A failure that came in while nobody was waiting (in the body).
    for _, t in ipairs(s.tasks) do
      if not seen[t] and t:done() then
        seen[t] = true
        if t:status() == "failed" then
          local _, err = cjoin(t)
          record(s, t, err)
          if not s.cancelled then Scope.cancel(s) end
        end
      end
    end
    local pending = pending_of(s)
    if #pending == 0 then return end
    local ok, k = pcall(wait_any, pending)
    if not ok then
      -- The scope's own task was cancelled (or failed): so are its tasks.
      -- It cannot park any more, so it cannot wait for their cleanup.
      Scope.cancel(s)
      s.closed = true
      error(k, 0)
    end
  end
end

local function finish(s, ok, ...)
  if not ok then
    local err = ...
    if err == require("parx.task").CANCELLED then
      Scope.cancel(s)
      s.closed = true
      error(err, 0)
    end
    record(s, nil, err)
    Scope.cancel(s)
  end
  wait_all(s)
  s.closed = true
  if #s.errors > 0 then
    error(setmetatable({errors = s.errors}, ErrorGroup), 0)
  end
  return ...
end

-- parx.scope(fn, ...) -> fn's results.  fn(s, ...) starts tasks with
-- s:spawn and s:async; scope returns when all of them have ended.  If any
-- task fails (or fn raises), the others are cancelled, scope waits for
-- them, and raises an error group (is_error_group) holding every failure.
function M.scope(fn, ...)
  if type(fn) ~= "function" then
    raise("bad argument #1 to 'scope' (function expected, got " .. type(fn) .. ")")
  end
  local s = setmetatable({tasks = {}, errors = {}, closed = false}, Scope)
  return finish(s, pcall(fn, s, ...))
end

-- t:on_done(fn) -> the task that runs fn.  fn(t) runs on the calling
-- VM, in a task of its own (parx.async), once t has ended in any way
-- (done, failed, cancelled); at once if it has.  Join the returned task
-- to see fn's own error.
function M.on_done(t, fn)
  if type(fn) ~= "function" then
    raise("bad argument #1 to 'on_done' (function expected, got " .. type(fn) .. ")")
  end
  return c.async(function()
    if not t:done() then wait_any({t}) end
    return fn(t)
  end)
end

-- gather with options --------------------------------------------------------

local KNOWN = options.known{"return_errors"}

-- gather(opts, t1, ...) / gather(opts, list), called by parx.gather when
-- its last argument is an options table.  With opts.return_errors:
-- waits for every task (none is cancelled) and gives each task's first
-- result or, for a task that failed, its error value, in place.
function M.gather(opts, ...)
  check("gather", opts, KNOWN)
  local n = select("#", ...)
  if not opts.return_errors then return require("parx.task").gather(...) end
  local list, as_table = {...}, false
  if n == 1 and not is_task(list[1]) and type(list[1]) == "table" then
    list, as_table = list[1], true
    n = #list
  end
  require("parx.task")._check_tasks("parx.gather", list, n, as_table and 1)
  local pending = {}
  for i = 1, n do pending[i] = list[i] end
  while #pending > 0 do
    table.remove(pending, (wait_any(pending)))
  end
  local out = {}
  for i = 1, n do out[i] = select(2, cjoin(list[i])) end
  if as_table then return out end
  return unpack(out, 1, n)
end

return M
