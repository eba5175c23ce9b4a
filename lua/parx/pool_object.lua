-- parx.pool_object: pools of a chosen size (parx.pool.new) and the
-- callbacks of pool.map_async and pool.submit.
--
-- A pool object has VMs of its own (a VM group, runtime/core/group.c):
-- `workers` VMs on threads of their own, started by parx.pool.new, which
-- run its work and nothing else; the runtime's workers never run it.
-- - In each of its VMs, initializer(unpack(initargs)) runs once, first,
--   before any task.  The globals it assigns land in the pool's table in
--   that VM, which the functions the pool runs there read first (Python's
--   initializer setting a worker's globals); a global that such a function
--   assigns lands there too.
-- - max_tasks_per_worker = n: a VM that ran n of the pool's tasks (a
--   submit, or one chunk of a map call, as in Python's maxtasksperchild)
--   takes no more and is replaced by a fresh VM (a new Lua state, the
--   initializer again) once its tasks end.
-- - close(): no new work; its VMs end once what was started has ended.
--   A pool that is collected, or still open when the process ends, is
--   closed then.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local task = require "parx.task"
local c = require "parx.c.pool"

local error, type, tostring, pairs, select = error, type, tostring, pairs, select
local setmetatable, getmetatable, rawget, setfenv, getfenv, pcall, unpack =
  setmetatable, getmetatable, rawget, setfenv, getfenv, pcall, unpack

local M = {}

local function pool() return require "parx.pool" end

-- Unknown option names raise, listing the valid ones (parx.opts).
local check_names = options.check

local callable = require("parx.pool")._callable

-- ---------------------------------------------------------------------------
-- Callbacks: run on the caller's VM once the task has ended.

local CALLBACK_OPTS = {callback = true, error_callback = true}
-- map_async: map's options and the callbacks; submit: spawn's and the
-- callbacks.
local MAP_ASYNC_OPTS = options.known{"callback", "chunksize", "error_callback", "n", "progress",
                                     "timeout", "workers"}
local SUBMIT_OPTS = options.known{"callback", "daemon", "error_callback", "name"}

-- Split opts into the callbacks and the rest (a new table, or nil if the
-- rest is empty).
local function take_callbacks(name, opts)
  local cb, ecb, rest = opts.callback, opts.error_callback, nil
  if cb ~= nil and not callable(cb) then
    raise(("%s: opts.callback must be a function, got %s"):format(name, type(cb)))
  end
  if ecb ~= nil and not callable(ecb) then
    raise(("%s: opts.error_callback must be a function, got %s"):format(name, type(ecb)))
  end
  for k, v in pairs(opts) do
    if not CALLBACK_OPTS[k] then
      rest = rest or {}
      rest[k] = v
    end
  end
  return cb, ecb, rest
end

-- callback(results...) when t succeeds, error_callback(err) when it fails
-- (cancelled included: err is parx.CANCELLED), on this VM, in a task of
-- their own (t:on_done).  Returns t.
local function attach(t, cb, ecb)
  if cb or ecb then
    t:on_done(function(done)
      local r = {pcall(done.join, done)}
      if r[1] then
        if cb then cb(unpack(r, 2, table.maxn(r))) end
      elseif ecb then
        ecb(r[2])
      end
    end)
  end
  return t
end
M.attach = attach

-- map_async(fn, list, opts) -> Task: pool.map run by a task on this VM;
-- t:join() gives the results.  opts: map's, plus callback (called with the
-- result table) and error_callback (called with the error).
function M.map_async(map, name, fn, list, opts)
  if opts ~= nil and type(opts) ~= "table" then
    raise(("bad argument #3 to '%s' (table expected, got %s)"):format(name, type(opts)))
  end
  check_names(name, opts, MAP_ASYNC_OPTS)
  local cb, ecb, rest = take_callbacks(name, opts or {})
  -- Check the arguments now, in the caller (map raises them at once).
  if not callable(fn) then
    raise(("bad argument #1 to '%s' (function expected, got %s)"):format(name, type(fn)))
  end
  if type(list) ~= "table" then
    raise(("bad argument #2 to '%s' (table expected, got %s)"):format(name, type(list)))
  end
  return attach(task.async(map, fn, list, rest), cb, ecb)
end

-- submit([opts,] fn, ...) -> Task: fn(...) on a worker (parx.spawn).
-- opts: parx.spawn's (name, daemon) plus callback and error_callback.
function M.submit(spawn_fn, name, ...)
  options.check_fn(name, ...)
  local first = ...
  if type(first) == "table" and not callable(first) then
    check_names(name, first, SUBMIT_OPTS)
    local cb, ecb, rest = take_callbacks(name, first)
    if rest then return attach(spawn_fn(rest, select(2, ...)), cb, ecb) end
    return attach(spawn_fn(select(2, ...)), cb, ecb)
  end
  return spawn_fn(...)
end

-- ---------------------------------------------------------------------------
-- The pool's VMs: its state there (one pool per VM).

local states = {} -- pool id -> {env, err}

-- The environment of fn for a pool: the pool's globals, then fn's own.
local function bind(fn, penv)
  if type(fn) ~= "function" then return end
  local ok, own = pcall(getfenv, fn)
  if not ok or type(own) ~= "table" then return end
  pcall(setfenv, fn, setmetatable({}, {
    __index = function(_, k)
      local v = rawget(penv, k)
      if v ~= nil then return v end
      return own[k]
    end,
    __newindex = penv,
  }))
end

-- A VM's first task: initializer(unpack(initargs)) in the pool's new state.
-- Its error is kept and raised by every task of the pool on this VM.
function M._init(id, init, initargs)
  local st = {env = {}}
  states[id] = st
  bind(init, st.env)
  local ok, err = xpcall(function() return init(unpack(initargs, 1, initargs.n)) end,
                         function(e) return type(e) == "string" and debug.traceback(e, 2) or e end)
  if not ok then st.err = err end
end

-- fn(...) as one item of the pool `id`.  `copy` is per received copy of fn:
-- it remembers that fn is bound to the pool's globals.
function M._run(copy, id, fn, ...)
  local st = states[id]
  if not st then
    st = {env = {}}
    states[id] = st
  end
  if st.err ~= nil then
    error(("pool: the initializer failed on this VM: %s"):format(tostring(st.err)), 0)
  end
  if not copy.bound then
    bind(fn, st.env)
    copy.bound = true
  end
  return fn(...)
end

-- The same as one task of the VM (a submit): counted for max_tasks_per_worker.
function M._task(copy, id, fn, ...)
  c.count_task()
  return M._run(copy, id, fn, ...)
end

-- ---------------------------------------------------------------------------
-- Caller side.

local Pool = {}
Pool.__index = Pool

local NEW_OPTS = options.known{"initargs", "initializer", "max_tasks_per_worker", "workers"}
local SPAWN_OPTS = options.known{"daemon", "name"}
local next_id = 0

local function is_count(v) return require("parx.pool")._is_count(v, 1) end

-- What each of the pool's VMs runs first (no upvalues: it marshals small).
local function init_main(id, init, initargs)
  return require("parx.pool_object")._init(id, init, initargs)
end

-- parx.pool.new{workers = n, initializer = fn, initargs = {...},
-- max_tasks_per_worker = n} -> a pool with n VMs of its own.
function M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    raise(("bad argument #1 to 'pool.new' (table expected, got %s)"):format(type(opts)))
  end
  check_names("pool.new", opts, NEW_OPTS)
  local workers = opts.workers or pool().size()
  if not is_count(workers) or workers > 1024 then
    raise(("pool.new: opts.workers must be an integer from 1 to 1024, got %s"):format(tostring(opts.workers)))
  end
  local init = opts.initializer
  if init ~= nil and not callable(init) then
    raise(("pool.new: opts.initializer must be a function, got %s"):format(type(init)))
  end
  local initargs = opts.initargs or {}
  if type(initargs) ~= "table" then
    raise(("pool.new: opts.initargs must be a table, got %s"):format(type(initargs)))
  end
  local max_tasks = opts.max_tasks_per_worker
  if max_tasks ~= nil and not is_count(max_tasks) then
    raise(("pool.new: opts.max_tasks_per_worker must be an integer from 1 to 2^53, got %s")
          :format(tostring(max_tasks)))
  end
  next_id = next_id + 1
  -- Unique across the VMs of the process: the caller's VM and a counter.
  local id = tostring(states):match("0x%x+") .. ":" .. next_id
  local args = {n = table.maxn(initargs)}
  for i = 1, args.n do args[i] = initargs[i] end
  local ok, group
  if init then
    ok, group = pcall(c.group_new, workers, max_tasks or 0, init_main, id, init, args)
  else
    ok, group = pcall(c.group_new, workers, max_tasks or 0)
  end
  if not ok then raise(group) end
  local ctx = {
    workers = function() return workers end,
    spawn = function(...) return c.group_spawn(group, false, nil, ...) end,
  }
  return setmetatable({_id = id, _workers = workers, _group = group, _calls = pool()._on(ctx),
                       _closed = false, _tasks = {}}, Pool)
end

local function check_open(p, name)
  if getmetatable(p) ~= Pool then
    raise(("bad self to '%s' (a pool expected: call it as p:%s(...))"):format(name, name:match("%w+$")))
  end
  if p._closed then
    raise(("pool.%s: the pool is closed (close() was called; make a new pool)"):format(name:match("%w+$")))
  end
end

-- What the pool's VMs run for fn: fn in the pool's state there; counted
-- as a task of its VM when `counted` (a submit).
local function wrap(p, fn, counted)
  if not callable(fn) then return fn end -- pool.map reports it
  local id, copy = p._id, {}
  if counted then
    return function(...) return require("parx.pool_object")._task(copy, id, fn, ...) end
  end
  return function(...) return require("parx.pool_object")._run(copy, id, fn, ...) end
end

-- p:map, p:starmap, p:imap, p:imap_unordered (fn, list, opts): parx.pool's,
-- on the pool's VMs.
for _, name in ipairs({"map", "starmap", "imap", "imap_unordered"}) do
  Pool[name] = function(self, fn, list, opts)
    check_open(self, name)
    return self._calls[name](wrap(self, fn), list, opts)
  end
end

function Pool:reduce(fn, list, init, opts)
  check_open(self, "reduce")
  return self._calls.reduce(wrap(self, fn), list, init, opts)
end

function Pool:parallel_for(first, last, fn, opts)
  check_open(self, "parallel_for")
  return self._calls.parallel_for(first, last, wrap(self, fn), opts)
end

-- Tasks started by map_async and submit, for join().
local function track(p, t)
  local ts = p._tasks
  ts[#ts + 1] = t
  return t
end

function Pool:map_async(fn, list, opts)
  check_open(self, "map_async")
  local map = function(f, l, o) return self:map(f, l, o) end
  return track(self, M.map_async(map, "map_async", fn, list, opts))
end

-- p:submit([opts,] fn, ...) -> Task: fn(...) on one of the pool's VMs, in
-- the pool's state there.  opts: name, daemon (as parx.spawn's), callback,
-- error_callback.
function Pool:submit(...)
  check_open(self, "submit")
  local group = self._group
  local spawn_fn = function(...)
    local o, f = ..., nil
    if type(o) == "table" and not callable(o) then
      check_names("submit", o, SPAWN_OPTS)
      if o.name ~= nil and type(o.name) ~= "string" then
        raise(("submit: opts.name must be a string, got %s"):format(type(o.name)))
      end
      f = select(2, ...)
      if not callable(f) then
        raise(("bad argument #2 to 'submit' (function expected, got %s)"):format(type(f)))
      end
      return c.group_spawn(group, o.daemon, o.name, wrap(self, f, true), select(3, ...))
    end
    if not callable(o) then
      raise(("bad argument #1 to 'submit' (function expected, got %s)"):format(type(o)))
    end
    return c.group_spawn(group, false, nil, wrap(self, o, true), select(2, ...))
  end
  local t = M.submit(spawn_fn, "submit", ...)
  return track(self, t)
end

function Pool:size() return self._workers end

-- close(): no new work; what was started runs to its end, then the pool's
-- VMs end.
function Pool:close()
  if getmetatable(self) ~= Pool then raise("bad self to 'close' (a pool expected)") end
  if not self._closed then
    self._closed = true
    c.group_close(self._group)
  end
end

-- join(): wait for every map_async and submit task of the pool and for its
-- VMs to end (close it first, as in Python).  Their errors are not raised
-- here: join each task (or use error_callback) to see them.
function Pool:join()
  if getmetatable(self) ~= Pool then raise("bad self to 'join' (a pool expected)") end
  if not self._closed then raise("pool.join: close the pool first") end
  local ts = self._tasks
  self._tasks = {}
  for i = 1, #ts do
    if not ts[i]:done() then task.wait({ts[i]}) end
  end
  -- Its VMs end within moments of their last task.
  while c.group_live(self._group) > 0 do task.sleep(0.001) end
end

function Pool:__tostring()
  return ("parx.pool (%d VMs of its own%s)"):format(self._workers, self._closed and ", closed" or "")
end

return M
