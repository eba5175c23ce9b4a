-- parx.pool: map, imap, imap_unordered, starmap, reduce and parallel_for
-- over the runtime's workers.
--
-- Every call is one job (runtime/mod/pool.c): the function is marshalled
-- once, the input is cut into chunks that the caller publishes one by one
-- (numbers through the job's array of doubles, anything else marshalled),
-- and one runner task per worker claims chunks until none are left.  The
-- caller parks on the job until the chunk it reads next is done.
--
-- Chunk sizes: opts.chunksize, else about four chunks per worker like
-- Python's Pool.map, at most 8192 items (parallel_for's ranges: no cap).
-- The list is list[1 .. #list]; a list with holes (a positive integer key
-- beyond #list) raises unless opts.n says how many items to map.
--
-- Results keep their positions, nil included: map returns the result table
-- alone (so `print(unpack(pool.map(f, xs)))` prints every result; with nils
-- the caller's own item count says how many); the iterators yield
-- `index, value` pairs so a nil value does not end a for loop.
--
-- A runner whose caller stops reading (an error, a timeout, a loop left
-- early) finishes the chunk in hand and stops; chunks nobody claimed are
-- dropped.  Tasks the mapped function itself spawned are not cancelled with
-- it (like any spawned task they run to the end unless cancelled).
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local c = require "parx.c.pool"
local task = require "parx.task"
local tnew = require "table.new"
local ffi = require "ffi"
local progress = require "parx.progress"

local spawn, now = task.spawn, task.now
local put, put_numbers, ready, wait, take = c.put, c.put_numbers, c.ready, c.wait, c.take
local claim, finish, fail, finish_num = c.claim, c.finish, c.fail, c.finish_num
local ceil, floor, min, max, huge = math.ceil, math.floor, math.min, math.max, math.huge
local error, type, select, tostring, unpack, next = error, type, select, tostring, unpack, next
local traceback = debug.traceback
local MAP, STARMAP, REDUCE, FOR = c.MAP, c.STARMAP, c.REDUCE, c.FOR

local M = {}

-- submit([opts,] fn, ...) -> Task: parx.spawn, with opts.callback and
-- opts.error_callback (lua/parx/pool_object.lua) besides spawn's options.
function M.submit(...) return require("parx.pool_object").submit(task.spawn, "pool.submit", ...) end

-- new{workers, initializer, initargs, max_tasks_per_worker} -> a pool of
-- its own size and worker state (lua/parx/pool_object.lua).
function M.new(opts) return require("parx.pool_object").new(opts) end

-- size() -> the number of worker threads
M.size = c.workers

-- ---------------------------------------------------------------------------
-- Runners (worker side).
--
-- The loops over a chunk (parx.pool_loops) are loaded afresh for every
-- runner from their string.dump: a job's function is a new prototype in
-- each worker, and a loop shared by all jobs would collect one side trace
-- per job until LuaJIT gave up compiling it.
local body_code = {}
for mode, make in pairs(require "parx.pool_loops") do
  body_code[mode] = string.dump(make)
end

-- The message handler: the worker's traceback travels with the message.
local function handler(e)
  if type(e) == "string" then return traceback(e, 2) end
  return e
end

local runner_main
local count_task, respawn = c.count_task, c.group_respawn

-- The body of a runner task: claim chunks until the job has none left.
-- On a VM of a pool object with max_tasks_per_worker, each chunk is one of
-- the VM's tasks: once they are used up the runner hands the job on to a
-- runner on a fresh VM of the pool and ends (its VM is then replaced).
function M._run(job, bar)
  local ok, fn, mode = pcall(c.fn, job)
  if not ok then
    c.abort(job, "parx.pool: cannot start the function on a worker: " .. tostring(fn))
    return
  end
  if bar then fn = progress.counted(fn, mode == FOR, bar) end
  local body = loadstring(body_code[mode], "=parx.pool")(tnew, unpack, type)
  local inbuf, outbuf = c.buffers(job)
  if inbuf then
    inbuf, outbuf = ffi.cast("double *", inbuf), ffi.cast("double *", outbuf)
  end
  while true do
    local k, a, b, base = claim(job)
    while k == false do k, a, b, base = claim(job) end
    if not k then return end
    local done, r = xpcall(body, handler, fn, a, b, base, inbuf, outbuf)
    if not done then fail(job, k, r)
    elseif r == true and outbuf then finish_num(job, k)
    else finish(job, k, r) end
    if count_task() then
      respawn(runner_main, job, bar)
      return
    end
  end
end

-- What parx.spawn sends: no upvalues, so it marshals in a few bytes.
function runner_main(job, bar)
  return require("parx.pool")._run(job, bar)
end

-- ---------------------------------------------------------------------------
-- Caller side.

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Integers beyond 2^53 are not exact as Lua numbers.
local MAX_INT = 2 ^ 53

-- Whether v is an integer from lo to 2^53 (false for NaN and infinities).
local function is_count(v, lo)
  return type(v) == "number" and v >= lo and v <= MAX_INT and v == floor(v)
end

M._callable, M._is_count = callable, is_count -- for parx.pool_object

-- A number as a user would write it in a message (1e+300, nan, 3).
local function numstr(v)
  if type(v) == "number" and v == floor(v) and v >= -MAX_INT and v <= MAX_INT then
    return ("%d"):format(v)
  end
  return tostring(v)
end

local KNOWN_OPTS = options.known{"chunksize", "n", "progress", "timeout", "workers"}

local function check_opts(name, opts, argn)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    raise(("bad argument #%d to '%s' (table expected, got %s)"):format(argn, name, type(opts)))
  end
  options.check(name, opts, KNOWN_OPTS)
  local w = opts.workers
  if w ~= nil and not is_count(w, 1) then
    raise(("%s: opts.workers must be an integer from 1 to 2^53, got %s"):format(name, tostring(w)))
  end
  local cs = opts.chunksize
  if cs ~= nil and not is_count(cs, 1) then
    raise(("%s: opts.chunksize must be an integer from 1 to 2^53, got %s"):format(name, tostring(cs)))
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t ~= t or t < 0) then
    raise(("%s: opts.timeout must be a non-negative number of seconds"):format(name))
  end
  -- No Lua table holds 2^31 items (LuaJIT's arrays stop well below), and a
  -- results table that large could not be built either.
  local n = opts.n
  if n ~= nil and not (is_count(n, 0) and n < 2 ^ 31) then
    raise(("%s: opts.n must be an integer from 0 to 2^31-1, got %s"):format(name, tostring(n)))
  end
  return opts
end

-- The deadline of a call with opts.timeout: math.huge means no limit.
local function deadline_of(opts)
  local t = opts.timeout
  if t == nil or t == huge then return nil end
  return now() + t
end

-- The length of list: opts.n when given (items 1..n, nil ones included),
-- else #list, which must be all of it.  For a list with holes #list is any
-- border, e.g. 1 for {1, nil, 3}, and mapping 1..#list would silently drop
-- the rest: so a positive integer key beyond #list raises instead.
-- next(list, n) resumes the traversal after key n (list[n] is not nil), so
-- the check walks only the array part's slack and the hash part.
local function list_length(name, list, opts)
  local n = opts.n
  if n then return n end
  n = #list
  local k = next(list, n > 0 and n or nil)
  while k ~= nil do
    if type(k) == "number" and k > n and k == floor(k) then
      raise(("%s: the list has a hole: #list is %d but list[%s] is set "
             .. "(pass opts.n to map items 1..n, nils included)"):format(name, n, numstr(k)))
    end
    k = next(list, k)
  end
  return n
end

-- Python's rule, about four chunks per worker, capped at MAX_CHUNK items:
-- LuaJIT maps arrays over 128 KiB straight from the system, so a bigger
-- chunk table is fresh memory to fault in on every chunk in every VM, which
-- costs more than the extra chunks.
-- parallel_for's ranges carry no items, so they are not capped.
local MAX_CHUNK = 8192
local function default_chunksize(n, workers, cap)
  local per = workers * 4
  local cs = floor(n / per)
  if n % per ~= 0 then cs = cs + 1 end
  return min(max(cs, 1), cap or MAX_CHUNK)
end

-- The progress bar (parx.progress), only on a terminal.  Runners count the
-- items they finish in the bar's shared counter, so it moves per item.
local function bar_new(name, total, opts)
  if not opts.progress or total == 0 then return nil end
  local bar = progress.bar(total, {label = type(opts.progress) == "string" and opts.progress or name})
  return bar.shown and bar or nil
end

local function bar_draw(bar, done, final)
  if bar.count then done = max(done, bar.count:get()) end
  if final then bar:close(done) else bar:update(done) end
end

-- A running job as the caller sees it.
local MAX_CHUNKS = 1e9 -- pool.c's limit on the chunks of one job

-- ctx: where the runners go: {workers = function() -> how many VMs,
-- spawn = function(fn, ...) -> Task}; the runtime's workers (DEFAULT) or a
-- pool object's own VMs (parx.pool_object).
local DEFAULT = {workers = c.workers, spawn = spawn}

local function start(ctx, name, mode, fn, nchunks, opts, total, ...)
  if nchunks >= MAX_CHUNKS then
    raise(("%s: %s items in chunks of %s make %s chunks (at most 10^9; "
           .. "pass a larger opts.chunksize)"):format(name, numstr(total),
           numstr(ceil(total / nchunks)), numstr(nchunks)))
  end
  local ok, owner = pcall(c.new, mode, fn, nchunks, ...)
  if not ok then
    raise(("%s: cannot send the function to the workers: %s"):format(name, tostring(owner)))
  end
  local lane = c.buffers(owner) ~= nil
  local share = c.share(owner)
  local runners = {}
  local bar = bar_new(name, total, opts)
  local shared = progress.shared(bar)
  -- opts.workers: at most that many chunks run at once (one per runner).
  local nvms = ctx.workers()
  for i = 1, min(opts.workers or nvms, nvms, nchunks) do
    runners[i] = ctx.spawn(runner_main, share, shared)
  end
  local st = {name = name, owner = owner, runners = runners, nchunks = nchunks,
              lane = lane,
              deadline = deadline_of(opts),
              bar = bar}
  return st
end

local function stop(st)
  c.cancel(st.owner)
  for _, t in ipairs(st.runners) do t:cancel() end
end

-- Publish every chunk of list (items 1..n, cs per chunk).  Workers start on
-- the first while the caller writes the next.  starmap checks its items.
local function publish(st, list, n, cs, check_args)
  local owner = st.owner
  local ok, err = pcall(function()
    -- One staging table for every chunk: the marshaller copies it out, and
    -- a fresh table per chunk would be fresh memory to fault in each time.
    local sub = tnew(min(cs, n), 0)
    local lane = st.lane
    for k = 1, st.nchunks do
      local lo = (k - 1) * cs
      local m = min(cs, n - lo)
      -- A chunk of numbers goes through the numeric lane, copied in C;
      -- put_numbers refuses a chunk with anything else, which is sent as
      -- a message instead.
      if not (lane and put_numbers(owner, list, m, lo)) then
        if check_args then
          for i = 1, m do
            local v = list[lo + i]
            if type(v) ~= "table" then
              error(("item %d is not a table of arguments (got %s)"):format(lo + i, type(v)), 0)
            end
            sub[i] = v
          end
        else
          for i = 1, m do sub[i] = list[lo + i] end
        end
        if m < cs then
          for i = m + 1, cs do sub[i] = nil end
        end
        local sent, why = pcall(put, owner, sub, m)
        if not sent then
          -- The marshaller names the item inside the chunk: name it in list.
          why = tostring(why):gsub("%[(%d+)%]", function(i) return "[" .. (lo + tonumber(i)) .. "]" end, 1)
          error("cannot send an item of the list: " .. why, 0)
        end
      end
    end
  end)
  if not ok then
    stop(st)
    raise(("%s: %s"):format(st.name, tostring(err)))
  end
end

-- The next chunk: `want` is its index (0: whichever finishes first).
-- Returns index, value, count, base, in_lane (in_lane: the results came
-- through the numeric lane and were copied into dest[base + 1 ..], or
-- dest[1 ..] with from_one); nil on timeout; raises a worker's error.
local function next_chunk(st, want, dest, from_one)
  local owner, bar = st.owner, st.bar
  local j = ready(owner, want)
  while not j do
    local left = st.deadline and max(0, st.deadline - now())
    if bar then left = min(left or 0.2, 0.2) end
    if not wait(owner, want, left) then
      if bar then bar_draw(bar, (c.progress(owner))) end
      if st.deadline and now() >= st.deadline then
        stop(st)
        return nil
      end
    end
    j = ready(owner, want)
  end
  local ok, v, m, base, lane = take(owner, j, dest, from_one)
  if not ok then
    stop(st)
    if bar then bar:close() end
    error(v, 0)
  end
  if bar then bar_draw(bar, (c.progress(owner)), false) end
  return j, v, m, base, lane
end

local function done(st)
  c.close(st.owner)
  if st.bar then bar_draw(st.bar, st.bar.total, true) end
end

local function prepare(ctx, name, fn, list, opts)
  if not callable(fn) then
    raise(("bad argument #1 to '%s' (function expected, got %s)"):format(name, type(fn)))
  end
  if type(list) ~= "table" then
    raise(("bad argument #2 to '%s' (table expected, got %s)"):format(name, type(list)))
  end
  opts = check_opts(name, opts, 3)
  local n = list_length(name, list, opts)
  -- A chunk is never longer than the list (chunksize = 1e15 is one chunk).
  local cs = min(opts.chunksize or default_chunksize(n, ctx.workers()), max(n, 1))
  return opts, n, cs, ceil(n / cs)
end

local function map_mode(ctx, name, mode, fn, list, opts)
  local n, cs, nchunks
  opts, n, cs, nchunks = prepare(ctx, name, fn, list, opts)
  local res = tnew(n, 0)
  if n == 0 then return res end
  local st = start(ctx, name, mode, fn, nchunks, opts, n, mode == MAP and n or nil)
  publish(st, list, n, cs, mode == STARMAP)
  for k = 1, nchunks do
    local j, r, m, base, lane = next_chunk(st, k, res)
    if not j then return nil, "timeout" end
    if not lane then
      for i = 1, m do res[base + i] = r[i] end
    end
  end
  done(st)
  return res
end

-- map(fn, list, opts) -> results
function M.map(fn, list, opts) return map_mode(DEFAULT, "pool.map", MAP, fn, list, opts) end

-- map_async(fn, list, opts) -> Task whose join() gives map's results;
-- opts.callback(results) / opts.error_callback(err) run on this VM.
function M.map_async(fn, list, opts)
  return require("parx.pool_object").map_async(M.map, "pool.map_async", fn, list, opts)
end

-- starmap(fn, list_of_arg_lists, opts) -> results: fn(unpack(args))
function M.starmap(fn, list, opts) return map_mode(DEFAULT, "pool.starmap", STARMAP, fn, list, opts) end

local function iterate(ctx, name, ordered, fn, list, opts)
  local n, cs, nchunks
  opts, n, cs, nchunks = prepare(ctx, name, fn, list, opts)
  if n == 0 then return function() return nil end end
  local st = start(ctx, name, MAP, fn, nchunks, opts, n, n)
  publish(st, list, n, cs, false)
  local lanebuf = st.lane and tnew(min(cs, n), 0) -- a chunk's numeric results
  local taken, r, m, base, i, lane = 0, nil, 0, 0, 0, false
  return function()
    while i >= m do
      if taken >= nchunks then
        -- after the last item was read: done() hands the lane back
        if st then done(st); st = nil end
        return nil
      end
      taken = taken + 1
      local j
      j, r, m, base, lane = next_chunk(st, ordered and taken or 0, lanebuf, true)
      if not j then raise(name .. ": timeout") end
      if lane then r = lanebuf end
      i = 0
    end
    i = i + 1
    return base + i, r[i]
  end
end

-- for i, v in pool.imap(fn, list, opts) do ... end: results in order.
function M.imap(fn, list, opts) return iterate(DEFAULT, "pool.imap", true, fn, list, opts) end

-- for i, v in pool.imap_unordered(fn, list, opts) do ... end: results as
-- they finish; i is the item's index in list.
function M.imap_unordered(fn, list, opts)
  return iterate(DEFAULT, "pool.imap_unordered", false, fn, list, opts)
end

-- reduce(fn, list, init, opts) -> fn folded over list (left to right when
-- fn is associative): each worker folds whole chunks, the caller folds the
-- chunks' results in order, starting from init when given.
local function reduce(ctx, fn, list, init, opts)
  local n, cs, nchunks
  opts, n, cs, nchunks = prepare(ctx, "pool.reduce", fn, list, opts)
  if n == 0 then
    if init == nil then raise("pool.reduce: empty list and no initial value") end
    return init
  end
  local st = start(ctx, "pool.reduce", REDUCE, fn, nchunks, opts, n)
  publish(st, list, n, cs, false)
  local acc, have = init, init ~= nil
  for k = 1, nchunks do
    local j, v = next_chunk(st, k)
    if not j then return nil, "timeout" end
    if have then acc = fn(acc, v) else acc, have = v, true end
  end
  done(st)
  return acc
end
function M.reduce(fn, list, init, opts) return reduce(DEFAULT, fn, list, init, opts) end

-- parallel_for(first, last, fn, opts) -> the first result of each call, in
-- range order, and the number of ranges.  fn(lo, hi) is called on ranges
-- that cover first..last (inclusive, like a numeric for); opts.chunksize is
-- the range length (default: about four ranges per worker).
local function parallel_for(ctx, first, last, fn, opts)
  local name = "pool.parallel_for"
  -- Bounds are indices: integers that a double holds exactly, so that every
  -- lo and hi handed to fn is exact and the range arithmetic in pool.c
  -- stays within int64.
  for argn, v in ipairs({first, last}) do
    if type(v) ~= "number" then
      raise(("bad argument #%d to '%s' (integer expected, got %s)"):format(argn, name, type(v)))
    end
    if not (v >= -MAX_INT and v <= MAX_INT) or v ~= floor(v) then
      raise(("bad argument #%d to '%s' (%s is not an integer from -2^53 to 2^53)")
            :format(argn, name, numstr(v)))
    end
  end
  if not callable(fn) then
    raise(("bad argument #3 to '%s' (function expected, got %s)"):format(name, type(fn)))
  end
  opts = check_opts(name, opts, 4)
  local count = last - first + 1
  if count <= 0 then return {}, 0 end
  if count > MAX_INT then
    raise(("%s: the range %s..%s has more than 2^53 indices"):format(name, numstr(first), numstr(last)))
  end
  local per = opts.chunksize or default_chunksize(count, ctx.workers(), math.huge)
  local nchunks = ceil(count / per)
  local st = start(ctx, name, FOR, fn, nchunks, opts, count, first, last, per)
  local out = tnew(nchunks, 0)
  for k = 1, nchunks do
    local j, v = next_chunk(st, k)
    if not j then return nil, "timeout" end
    out[k] = v
  end
  done(st)
  return out, nchunks
end
function M.parallel_for(first, last, fn, opts) return parallel_for(DEFAULT, first, last, fn, opts) end

-- The calls above with their runners on ctx's VMs (parx.pool_object).
function M._on(ctx)
  return {
    map = function(fn, list, opts) return map_mode(ctx, "pool.map", MAP, fn, list, opts) end,
    starmap = function(fn, list, opts) return map_mode(ctx, "pool.starmap", STARMAP, fn, list, opts) end,
    imap = function(fn, list, opts) return iterate(ctx, "pool.imap", true, fn, list, opts) end,
    imap_unordered = function(fn, list, opts)
      return iterate(ctx, "pool.imap_unordered", false, fn, list, opts)
    end,
    reduce = function(fn, list, init, opts) return reduce(ctx, fn, list, init, opts) end,
    parallel_for = function(first, last, fn, opts) return parallel_for(ctx, first, last, fn, opts) end,
  }
end

return M
