-- parx.pool_object: pools of a chosen size (parx.pool.new) and the
-- callbacks of pool.map_async and pool.submit.
--
-- A pool object runs on the runtime's worker threads, as parx.pool does;
-- what makes it a pool of its own is:
-- - its size: at most `workers` chunks of one call run at once (the
--   opts.workers of parx.pool, which a call may lower, never raise);
-- - its per-worker state: in each worker VM, before the pool's first item
--   there, initializer(unpack(initargs)) runs.  The globals it assigns land
--   in the pool's own table in that VM, which the functions the pool runs
--   there read first (Python's initializer setting a worker's globals); a
--   global that such a function assigns lands there too.  Nothing is
--   written into the worker's _G, so other pools and tasks never see it;
-- - max_tasks_per_worker = n: after n items in a VM the pool's state there
--   is dropped and the initializer runs again before the next item, which
--   is what Python's maxtasksperchild gives a worker (a fresh start).  The
--   VM itself and its thread stay.
-- The pool starts no VM or thread of its own: workers are shared by every
-- pool, and a pool of 2 on a runtime of 8 workers runs 2 at a time.
local task = require "parx.task"

local error, type, tostring, pairs, select = error, type, tostring, pairs, select
local setmetatable, getmetatable, rawget, setfenv, getfenv, pcall, unpack =
  setmetatable, getmetatable, rawget, setfenv, getfenv, pcall, unpack

local M = {}

local function pool() return require "parx.pool" end

-- Unknown option names raise, listing the valid ones (sorted).
local function check_names(name, opts, known)
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown option '%s' (known: %s)"):format(name, tostring(k), table.concat(names, ", ")), 3)
    end
  end
end

local callable = require("parx.pool")._callable

-- ---------------------------------------------------------------------------
-- Callbacks: run on the caller's VM once the task has ended.

local CALLBACK_OPTS = {callback = true, error_callback = true}

-- Split opts into the callbacks and the rest (a new table, or nil if the
-- rest is empty).
local function take_callbacks(name, opts)
  local cb, ecb, rest = opts.callback, opts.error_callback, nil
  if cb ~= nil and not callable(cb) then
    error(("%s: opts.callback must be a function, got %s"):format(name, type(cb)), 3)
  end
  if ecb ~= nil and not callable(ecb) then
    error(("%s: opts.error_callback must be a function, got %s"):format(name, type(ecb)), 3)
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
    error(("bad argument #3 to '%s' (table expected, got %s)"):format(name, type(opts)), 2)
  end
  local cb, ecb, rest = take_callbacks(name, opts or {})
  -- Check the arguments now, in the caller (map raises them at once).
  if not callable(fn) then
    error(("bad argument #1 to '%s' (function expected, got %s)"):format(name, type(fn)), 2)
  end
  if type(list) ~= "table" then
    error(("bad argument #2 to '%s' (table expected, got %s)"):format(name, type(list)), 2)
  end
  return attach(task.async(map, fn, list, rest), cb, ecb)
end

-- submit([opts,] fn, ...) -> Task: fn(...) on a worker (parx.spawn).
-- opts: parx.spawn's (name, daemon) plus callback and error_callback.
function M.submit(spawn_fn, name, ...)
  local first = ...
  if type(first) == "table" and not callable(first) then
    local cb, ecb, rest = take_callbacks(name, first)
    if rest then return attach(spawn_fn(rest, select(2, ...)), cb, ecb) end
    return attach(spawn_fn(select(2, ...)), cb, ecb)
  end
  return spawn_fn(...)
end

-- ---------------------------------------------------------------------------
-- Worker side of a pool object: its state in this VM.

local states = {} -- pool id -> {env, items, gen}
local STATE_GEN = 0

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

-- Run fn(...) as an item of the pool `id` in this VM: its initializer
-- first when the pool has no state here (or has used it up).  `copy` is
-- per received copy of fn: it remembers which state fn is bound to.
function M._run(copy, id, init, initargs, max_items, fn, ...)
  local st = states[id]
  if not st or (max_items and st.items >= max_items) then
    STATE_GEN = STATE_GEN + 1
    st = {env = {}, items = 0, gen = STATE_GEN}
    states[id] = st
    if init then
      bind(init, st.env)
      init(unpack(initargs, 1, initargs.n))
    end
  end
  if copy.gen ~= st.gen then
    bind(fn, st.env)
    copy.gen = st.gen
  end
  st.items = st.items + 1
  return fn(...)
end

-- ---------------------------------------------------------------------------
-- Caller side.

local Pool = {}
Pool.__index = Pool

local NEW_OPTS = {workers = true, initializer = true, initargs = true, max_tasks_per_worker = true}
local next_id = 0

local function is_count(v) return require("parx.pool")._is_count(v, 1) end

-- parx.pool.new{workers = n, initializer = fn, initargs = {...},
-- max_tasks_per_worker = n} -> a pool.
function M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'pool.new' (table expected, got %s)"):format(type(opts)), 2)
  end
  check_names("pool.new", opts, NEW_OPTS)
  local workers = opts.workers or pool().size()
  if not is_count(workers) then
    error(("pool.new: opts.workers must be an integer from 1 to 2^53, got %s"):format(tostring(opts.workers)), 2)
  end
  local init = opts.initializer
  if init ~= nil and not callable(init) then
    error(("pool.new: opts.initializer must be a function, got %s"):format(type(init)), 2)
  end
  local initargs = opts.initargs or {}
  if type(initargs) ~= "table" then
    error(("pool.new: opts.initargs must be a table, got %s"):format(type(initargs)), 2)
  end
  local max_items = opts.max_tasks_per_worker
  if max_items ~= nil and not is_count(max_items) then
    error(("pool.new: opts.max_tasks_per_worker must be an integer from 1 to 2^53, got %s")
          :format(tostring(max_items)), 2)
  end
  next_id = next_id + 1
  -- Unique across VMs and processes' lifetimes of the state tables: the
  -- caller's VM address and a counter.
  local id = tostring(states):match("0x%x+") .. ":" .. next_id
  local args = {n = table.maxn(initargs)}
  for i = 1, args.n do args[i] = initargs[i] end
  return setmetatable({_id = id, _workers = workers, _init = init, _initargs = args,
                       _max = max_items, _closed = false, _tasks = {}}, Pool)
end

local function check_open(p, name)
  if getmetatable(p) ~= Pool then
    error(("bad self to '%s' (a pool expected: call it as p:%s(...))"):format(name, name:match("%w+$")), 3)
  end
  if p._closed then error(("pool.%s: the pool is closed"):format(name:match("%w+$")), 3) end
end

-- What the workers run for fn: fn in the pool's state there.
local function wrap(p, fn)
  if not callable(fn) then return fn end -- pool.map reports it
  local id, init, args, max_items = p._id, p._init, p._initargs, p._max
  local copy = {}
  return function(...)
    return require("parx.pool_object")._run(copy, id, init, args, max_items, fn, ...)
  end
end

-- The call's options with workers at most the pool's size.
local function limit(p, name, opts, argn)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(argn, name, type(opts)), 3)
  end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.workers == nil or (type(o.workers) == "number" and o.workers > p._workers) then
    o.workers = p._workers
  end
  return o
end

-- p:map, p:starmap, p:imap, p:imap_unordered (fn, list, opts): parx.pool's.
for _, name in ipairs({"map", "starmap", "imap", "imap_unordered"}) do
  Pool[name] = function(self, fn, list, opts)
    check_open(self, name)
    return pool()[name](wrap(self, fn), list, limit(self, name, opts, 3))
  end
end

function Pool:reduce(fn, list, init, opts)
  check_open(self, "reduce")
  return pool().reduce(wrap(self, fn), list, init, limit(self, "reduce", opts, 4))
end

function Pool:parallel_for(first, last, fn, opts)
  check_open(self, "parallel_for")
  return pool().parallel_for(first, last, wrap(self, fn), limit(self, "parallel_for", opts, 4))
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

-- p:submit([opts,] fn, ...) -> Task: fn(...) on a worker (parx.spawn), in
-- the pool's state there.
function Pool:submit(...)
  check_open(self, "submit")
  local first = ...
  local spawn_fn = function(...)
    local o, f = ..., nil
    if type(o) == "table" and not callable(o) then
      f = select(2, ...)
      return task.spawn(o, wrap(self, f), select(3, ...))
    end
    return task.spawn(wrap(self, o), select(2, ...))
  end
  local t = M.submit(spawn_fn, "submit", ...)
  return track(self, t)
end

function Pool:size() return self._workers end

-- close(): no new work; what was started runs to its end.
function Pool:close()
  if getmetatable(self) ~= Pool then error("bad self to 'close' (a pool expected)", 2) end
  self._closed = true
end

-- join(): wait for every map_async and submit task of the pool (close it
-- first, as in Python).  Their errors are not raised here: join each task
-- (or use error_callback) to see them.
function Pool:join()
  if getmetatable(self) ~= Pool then error("bad self to 'join' (a pool expected)", 2) end
  if not self._closed then error("pool.join: close the pool first", 2) end
  local ts = self._tasks
  self._tasks = {}
  for i = 1, #ts do
    if not ts[i]:done() then task.wait({ts[i]}) end
  end
end

function Pool:__tostring()
  return ("parx.pool (%d workers%s)"):format(self._workers, self._closed and ", closed" or "")
end

return M
