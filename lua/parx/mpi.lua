-- parx.mpi: MPI for parx scripts (the C side is runtime/mpi/, module
-- "parx.c.mpi").  Run a script on N ranks with `mpiexec -n N parx job.lua`;
-- under plain `parx` it is a job of one rank.
--
--   local mpi = require "parx.mpi"
--   if mpi.rank() == 0 then mpi.send({1, 2}, 1, 7) end
--   local v, st = mpi.recv(mpi.ANY_SOURCE, mpi.ANY_TAG)   -- st.source, st.tag
--   local total = mpi.allreduce(x, "sum")
--   local squares = mpi.map(function(i) return i * i end, list)   -- on rank 0
--
-- Every wait parks the calling task, never its thread.  Point-to-point
-- messages and barriers are MPI's, and so is allreduce of numbers and of
-- arrays with a named op (mt.allreduce); the other collectives are built
-- here on messages of a communicator of their own (a tree for bcast, the
-- root's loop for gather, scatter and reduce), so they carry any Lua value
-- and reduce with any Lua function.  As in MPI, every rank calls the
-- collectives of a communicator in the same order.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.mpi"
local array = require "parx.array" -- received arrays are pushed as arrays
local task = require "parx.task"

local bit = require "bit"
local ffi = require "ffi"
local band, lshift, rshift = bit.band, bit.lshift, bit.rshift
local error, type, tostring, pairs, ipairs = error, type, tostring, pairs, ipairs
local ceil, max, min = math.ceil, math.max, math.min
local is_array = array.is

local world_rank, world_size, host = C.init()
local ANY_SOURCE, ANY_TAG = C.ANY_SOURCE, C.ANY_TAG
local mt = C.metatable
local world = C.world()

local M = {ANY_SOURCE = ANY_SOURCE, ANY_TAG = ANY_TAG, world = world}

-- The value of a receive's results (raises its failure at `level`).
local function value_of(kind, payload, level)
  if kind == nil then error(payload, level + 1) end
  local ok, v = C.decode(payload)
  if not ok then error("parx.mpi: cannot decode a received message: " .. tostring(v), level + 1) end
  return v
end

-- ---- point to point ----------------------------------------------------

-- comm:send(v, dest[, tag]): parks until v's bytes are out of the way
-- (sent, or buffered by MPI).  Arrays travel raw; other values marshalled.
function mt.send(self, v, dest, tag)
  local ok, err = self:_send(v, dest, tag or 0, false)
  if not ok then raise(err) end
end

-- comm:recv([source[, tag]]) -> value, {source = s, tag = t}
function mt.recv(self, source, tag)
  local kind, payload, s, t = self:_recv(source or ANY_SOURCE, tag or ANY_TAG, false)
  return value_of(kind, payload, 2), {source = s, tag = t}
end

-- comm:recv_into(a, [source[, tag]]) -> a, {source = s, tag = t}: an array
-- message received straight into a's memory (no allocation, no copy); it
-- must be an array of a's dtype and element count (else an error, and the
-- message is consumed).  a must not be used until this returns.
function mt.recv_into(self, a, source, tag)
  local s, t = self:_recv_into(a, source or ANY_SOURCE, tag or ANY_TAG)
  if not s then raise(t) end
  return a, {source = s, tag = t}
end

-- comm:probe([source[, tag]]) -> {source = s, tag = t}: waits until a
-- message is there, without receiving it.
function mt.probe(self, source, tag)
  local s, t = self:_probe(source or ANY_SOURCE, tag or ANY_TAG)
  if not s then raise(t) end
  return {source = s, tag = t}
end

function mt.barrier(self)
  local ok, err = self:_barrier()
  if not ok then raise(err) end
end

-- comm:split(color[, key]) -> a communicator of the ranks that gave the
-- same color, ordered by key (default: the rank); nil for a negative
-- color (MPI_UNDEFINED).
local function split_arg(v, n, what)
  if type(v) ~= "number" or v % 1 ~= 0 then
    raise(("bad argument #%d to 'split' (%s must be an integer, got %s)"):format(
      n, what, type(v) == "number" and tostring(v) or type(v)))
  end
end

function mt.split(self, color, key)
  -- Checked before the barrier, at the caller's line: a bad argument
  -- (every rank runs the same code) raises at once on every rank.
  split_arg(color, 1, "color")
  if key ~= nil then split_arg(key, 2, "key") end
  self:barrier() -- MPI_Comm_split blocks the MPI thread: let all arrive first
  local c, err = self:_split(color, key)
  if c == nil then raise(err) end
  return c or nil
end

-- ---- collectives ---------------------------------------------------------

local function csend(self, v, dest, tag)
  local ok, err = self:_send(v, dest, tag, true)
  if not ok then raise(err) end
end

local function crecv(self, source, tag)
  local kind, payload = self:_recv(source, tag, true)
  return value_of(kind, payload, 3)
end

-- The start of a rooted collective: the root checked, then the size, this
-- rank and the collective's tag.
local function rooted(self, root, argn)
  root = root or 0
  if type(root) ~= "number" or root < 0 or root >= self:size() or root % 1 ~= 0 then
    raise(("bad argument #%d (root must be a rank, 0..%d)"):format(argn, self:size() - 1))
  end
  return root, self:size(), self:rank(), self:_next_tag()
end

-- The root's loop: fn(r) for every other rank, in rank order.
local function others(n, me, fn)
  for r = 0, n - 1 do
    if r ~= me then fn(r) end
  end
end

-- comm:bcast(v[, root]) -> root's v on every rank (a binomial tree).
function mt.bcast(self, v, root)
  local n, me, tag
  root, n, me, tag = rooted(self, root, 2)
  local rel = (me - root) % n
  local mask = 1
  while mask < n do
    if band(rel, mask) ~= 0 then
      v = crecv(self, (rel - mask + root) % n, tag)
      break
    end
    mask = lshift(mask, 1)
  end
  mask = rshift(mask, 1)
  while mask > 0 do
    if rel + mask < n then csend(self, v, (rel + mask + root) % n, tag) end
    mask = rshift(mask, 1)
  end
  return v
end

-- comm:gather(v[, root]) -> on root the list of every rank's v (rank r at
-- index r + 1); nil elsewhere.
function mt.gather(self, v, root)
  local n, me, tag
  root, n, me, tag = rooted(self, root, 2)
  if me ~= root then return csend(self, v, root, tag) end
  local out = {[me + 1] = v}
  others(n, me, function(r) out[r + 1] = crecv(self, r, tag) end)
  return out
end

-- comm:scatter(list[, root]) -> list[r + 1] on rank r (list read on root).
function mt.scatter(self, list, root)
  local n, me, tag
  root, n, me, tag = rooted(self, root, 2)
  if me ~= root then return crecv(self, root, tag) end
  if type(list) ~= "table" or is_array(list) then
    raise("bad argument #1 to 'scatter' (a list of one value per rank expected)")
  end
  others(n, me, function(r) csend(self, list[r + 1], r, tag) end)
  return list[me + 1]
end

-- comm:allgather(v) -> the list of every rank's v, on every rank: a
-- broadcast from each rank in turn (so arrays in it travel raw).
function mt.allgather(self, v)
  local out, me = {}, self:rank()
  for k = 0, self:size() - 1 do
    local x = self:bcast(k == me and v or nil, k)
    out[k + 1] = x
  end
  return out
end

-- comm:alltoall(list) -> the list whose entry r + 1 is rank r's list[me + 1].
function mt.alltoall(self, list)
  if type(list) ~= "table" or is_array(list) then
    raise("bad argument #1 to 'alltoall' (a list of one value per rank expected)")
  end
  local n, me, tag = self:size(), self:rank(), self:_next_tag()
  local out = {}
  out[me + 1] = list[me + 1]
  for k = 1, n - 1 do
    local dest, source = (me + k) % n, (me - k) % n
    -- Send while receiving: two ranks sending big values to each other
    -- would otherwise both wait for the other's receive.
    local t = task.async(csend, self, list[dest + 1], dest, tag)
    out[source + 1] = crecv(self, source, tag)
    t:join()
  end
  return out
end

local named = {
  sum = function(a, b) return a + b end,
  prod = function(a, b) return a * b end,
  min = function(a, b) if b < a then return b end return a end,
  max = function(a, b) if b > a then return b end return a end,
  land = function(a, b) return a and b end,
  lor = function(a, b) return a or b end,
}

local function check_op(op, argn)
  if type(op) == "string" and named[op] then return op end
  if type(op) == "function" then return op end
  raise(("bad argument #%d (op must be 'sum', 'prod', 'min', 'max', 'land', 'lor' or a function)")
    :format(argn))
end

-- acc op x, where acc is the running result (a copy when it is an array
-- and may be changed in place).
local function combine(op, acc, x)
  if type(op) == "function" then return op(acc, x) end
  if is_array(acc) and is_array(x) then
    C.reduce_into(acc, x, op)
    return acc
  end
  return named[op](acc, x)
end

-- comm:reduce(v, op[, root]) -> on root v0 op v1 op ... in rank order (arrays
-- element-wise, in C, for the named ops); nil elsewhere.
function mt.reduce(self, v, op, root)
  op = check_op(op, 2)
  local n, me, tag
  root, n, me, tag = rooted(self, root, 3)
  if me ~= root then return csend(self, v, root, tag) end
  local acc
  for r = 0, n - 1 do
    local x = v
    if r ~= me then x = crecv(self, r, tag) end
    if r == 0 then
      acc = (is_array(x) and type(op) == "string") and x:copy() or x
    else
      acc = combine(op, acc, x)
    end
  end
  return acc
end

-- What MPI's own allreduce takes: a number, or an array of a dtype MPI
-- has, with sum, prod, min or max.  As codes every rank compares: kind (0
-- none, 1 a number, 2 an array), op and dtype, element count.
local MPI_OPS = {sum = 1, prod = 2, min = 3, max = 4}
local MPI_DTYPES = {int8 = 1, int16 = 2, int32 = 3, int64 = 4, uint8 = 5, uint16 = 6,
                    uint32 = 7, uint64 = 8, float32 = 9, float64 = 10}

local function mpi_codes(v, op)
  local o = type(op) == "string" and MPI_OPS[op]
  if o then
    if type(v) == "number" then return 1, o, 1 end
    if is_array(v) then
      local d, n = MPI_DTYPES[v:dtype()], #v
      if d and n < 2 ^ 31 then return 2, o * 16 + d, n end
    end
  end
  return 0, 0, 0
end

-- comm:allreduce(v, op) -> the reduction on every rank.  Every rank first
-- says what it passes (an allreduce of three integers, in the same call to
-- the MPI thread as the values'): when all pass
-- numbers, or arrays of one dtype and size, with the same named op, MPI
-- reduces them (OpenMPI's algorithms, O(log size) steps, no copy through
-- rank 0; a sum of floats may then differ in its last bits from the rank
-- order of reduce); anything else goes the way of reduce and bcast.
-- opts.out: an array of v's dtype and size that receives the result (and
-- is returned), as mpi4py's Allreduce(sendbuf, recvbuf): no new array per
-- call; it may be v itself (MPI_IN_PLACE).
local allreduce_opts = options.known{"out"}

function mt.allreduce(self, v, op, opts)
  op = check_op(op, 2)
  local out
  if opts ~= nil then
    if type(opts) ~= "table" then raise("bad argument #3 to 'allreduce' (table expected)") end
    options.check("allreduce", opts, allreduce_opts)
    out = opts.out
    if out ~= nil and not (is_array(out) and is_array(v) and out:dtype() == v:dtype() and #out == #v) then
      raise("allreduce: opts.out must be an array of v's dtype and size (v an array)")
    end
  end
  local kind, code, n = mpi_codes(v, op)
  local what, x = self:_allreduce(v, op, kind, code, n, out)
  if what == nil then raise(x) end
  if what == "number" then return x end
  local r
  if what then r = value_of(what, x, 2) else r = self:bcast(self:reduce(v, op, 0), 0) end
  if out == nil then return r end
  if r ~= out then ffi.copy(out.data, r.data, #r * r:itemsize()) end
  return out
end

-- ---- map over ranks ----------------------------------------------------

local map_opts = options.known{"all", "chunksize", "progress"}

local function check_map_opts(name, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then raise(("bad argument #3 to '%s' (table expected)"):format(name)) end
  options.check(name, opts, map_opts)
  local cs = opts.chunksize
  if cs ~= nil and (type(cs) ~= "number" or cs < 1 or cs % 1 ~= 0) then
    raise(name .. ": chunksize must be a positive integer")
  end
  return opts
end

-- A rank other than the root: map the chunks the root sends on this
-- rank's pool until it says stop.
local function serve(self, tag)
  local pool = require "parx.pool"
  local fn = crecv(self, 0, tag)
  while true do
    local msg = crecv(self, 0, tag)
    if not msg then return end
    local ok, res = pcall(pool.map, fn, msg[2])
    if ok then
      csend(self, {msg[1], res, #msg[2]}, 0, tag)
    else
      csend(self, {msg[1], err = tostring(res), host = host}, 0, tag)
    end
  end
end

-- The root: hands out chunks, guided (each a share of what is left, so
-- the first are large and the last small: uneven items balance), keeps two
-- in flight per rank so a rank never waits for its next, maps its own
-- share on its pool, and calls on_chunk(lo, results, count) as chunks end.
-- Returns the first item error as {rank, host, message}, or nil.
local function drive(self, fn, list, opts, on_chunk)
  local pool = require "parx.pool"
  local n, tag = self:size(), self:_next_tag()
  local total = #list
  local nexti, failed = 1, nil
  local floor_cs = opts.chunksize or 1
  local done, bar = 0, opts.progress and total > 0 and require("parx.progress").bar(total,
    {label = type(opts.progress) == "string" and opts.progress or "mpi.map"})
  local function take()
    if failed or nexti > total then return nil end
    local left = total - nexti + 1
    local size = opts.chunksize or max(floor_cs, ceil(left / (2 * n)))
    size = min(size, left)
    local lo, items = nexti, {}
    for i = 1, size do items[i] = list[lo + i - 1] end
    nexti = nexti + size
    return lo, items
  end
  local function landed(lo, res, count)
    done = done + count
    on_chunk(lo, res, count)
    if bar then bar:update(done) end
  end
  local function remote(r)
    csend(self, fn, r, tag)
    local inflight = 0
    for _ = 1, 2 do
      local lo, items = take()
      if not lo then break end
      csend(self, {lo, items}, r, tag)
      inflight = inflight + 1
    end
    while inflight > 0 do
      local msg = crecv(self, r, tag)
      inflight = inflight - 1
      if msg.err then
        failed = failed or {r, msg.err, msg.host}
      else
        landed(msg[1], msg[2], msg[3])
      end
      local lo, items = take()
      if lo then
        csend(self, {lo, items}, r, tag)
        inflight = inflight + 1
      end
    end
    csend(self, false, r, tag)
  end
  local tasks = {}
  for r = 1, n - 1 do tasks[r] = task.async(remote, r) end
  while true do
    local lo, items = take()
    if not lo then break end
    local ok, res = pcall(pool.map, fn, items)
    if ok then landed(lo, res, #items) else failed = failed or {self:rank(), tostring(res), host} end
  end
  for r = 1, n - 1 do tasks[r]:join() end
  if bar then bar:close(done) end
  return failed, tag
end

-- The error of a failed item, raised on the root.
local function item_error(self, failed)
  return ("mpi.map: an item failed on rank %d@%s: %s"):format(failed[1], failed[3], failed[2])
end

local function check_map_args(name, fn, list)
  if type(fn) ~= "function" then raise(("bad argument #1 to '%s' (function expected)"):format(name)) end
end

-- comm:map(fn, list[, opts]) -> on the root (rank 0) the list of fn(item)
-- in order; the other ranks serve and get nil (opts.all: the list too).
-- Every rank calls it; only the root's fn and list are used.
function mt.map(self, fn, list, opts)
  opts = check_map_opts("mpi.map", opts)
  if self:rank() ~= 0 then
    serve(self, self:_next_tag())
    if opts.all then return self:bcast(nil, 0) end
    return nil
  end
  check_map_args("mpi.map", fn, list)
  local results = {}
  local failed = drive(self, fn, list, opts, function(lo, res, count)
    for i = 1, count do results[lo + i - 1] = res[i] end
  end)
  if opts.all then self:bcast(not failed and results or nil, 0) end
  if failed then raise(item_error(self, failed)) end
  return results
end

-- comm:imap(fn, list[, opts]) / comm:imap_unordered: on the root an
-- iterator of index, value pairs (in order / as chunks end); the other
-- ranks serve and get an empty iterator.  An item error raises from the
-- iterator once the chunks in flight are in.
local function iterate(self, name, ordered, fn, list, opts)
  opts = check_map_opts(name, opts)
  if opts.all then raise(name .. ": option 'all' is for mpi.map") end
  if self:rank() ~= 0 then
    serve(self, self:_next_tag())
    return function() return nil end
  end
  check_map_args(name, fn, list)
  local chan = require "parx.chan"
  local ch = chan.channel()
  task.async(function()
    local ok, failed = pcall(drive, self, fn, list, opts, function(lo, res, count)
      ch:send({lo, res, count})
    end)
    if not ok then ch:send({err = tostring(failed)})
    elseif failed then ch:send({err = item_error(self, failed)}) end
    ch:close()
  end)
  local buffered, spans, nexti, top, total = {}, {}, 1, 0, #list
  local cur, pos, count = nil, 0, 0
  return function()
    while true do
      if ordered then
        if nexti > total then return nil end
        if nexti <= top then
          local v = buffered[nexti]
          buffered[nexti] = nil
          nexti = nexti + 1
          return nexti - 1, v
        end
      elseif cur and pos < count then
        pos = pos + 1
        return cur[1] + pos - 1, cur[2][pos]
      end
      local msg, ok = ch:recv()
      if not ok then
        if ordered and nexti <= total then raise(name .. ": the map ended early") end
        return nil
      end
      if msg.err then raise(msg.err) end
      if ordered then
        -- Values wait here until every earlier chunk is in: `top` is the
        -- last index of the contiguous prefix received.
        for i = 1, msg[3] do buffered[msg[1] + i - 1] = msg[2][i] end
        spans[msg[1]] = msg[3]
        while spans[top + 1] do
          local c = spans[top + 1]
          spans[top + 1] = nil
          top = top + c
        end
      else
        cur, pos, count = msg, 0, msg[3]
      end
    end
  end
end

function mt.imap(self, fn, list, opts) return iterate(self, "mpi.imap", true, fn, list, opts) end
function mt.imap_unordered(self, fn, list, opts)
  return iterate(self, "mpi.imap_unordered", false, fn, list, opts)
end

-- ---- the module: world's methods as functions ----------------------------

function M.rank() return world_rank end
function M.size() return world_size end
function M.processor_name() return host end

for _, name in ipairs({"send", "recv", "recv_into", "probe", "barrier", "split", "bcast", "gather",
                       "scatter", "allgather", "alltoall", "reduce", "allreduce", "map",
                       "imap", "imap_unordered"}) do
  local method = mt[name]
  M[name] = function(...) return method(world, ...) end
end

return M
