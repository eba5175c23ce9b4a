-- parx.pool.new (pools of a chosen size, an initializer per worker,
-- max_tasks_per_worker) and the callbacks of pool.map_async and
-- pool.submit (lua/parx/pool_object.lua).

local pool = parx.pool

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

-- The most items of fn's that ran at once, over list, mapped by p.
local function peak_concurrency(p, n)
  local running, peak = parx.atomic(0), parx.atomic(0)
  p:map(function(x)
    local now = running:add(1)
    local seen = peak:get()
    while now > seen and not peak:cas(seen, now) do seen = peak:get() end
    parx.sleep(0.01)
    running:add(-1)
    return x
  end, range(n), {chunksize = 1})
  return peak:get()
end

describe("parx.pool.new", function()
  it("gives a pool with map, starmap, imap, imap_unordered, reduce, parallel_for and submit", function()
    local p = pool.new{workers = 2}
    assert.equal(2, p:size())
    assert.same({1, 4, 9}, p:map(function(x) return x * x end, {1, 2, 3}))
    assert.same({3, 7}, p:starmap(function(a, b) return a + b end, {{1, 2}, {3, 4}}))
    local got = {}
    for i, v in p:imap(function(x) return -x end, {1, 2, 3}) do got[i] = v end
    assert.same({-1, -2, -3}, got)
    got = {}
    for i, v in p:imap_unordered(function(x) return x + 1 end, {1, 2, 3}) do got[i] = v end
    assert.same({2, 3, 4}, got)
    assert.equal(15, p:reduce(function(a, b) return a + b end, range(5)))
    local sums = p:parallel_for(1, 10, function(lo, hi)
      local s = 0
      for i = lo, hi do s = s + i end
      return s
    end, {chunksize = 5})
    assert.same({15, 40}, sums)
    assert.equal(12, p:submit(function(a) return a * 2 end, 6):join())
  end)

  it("runs at most `workers` items of a call at once", function()
    if pool.size() < 2 then pending("needs 2 workers") return end
    assert.equal(1, peak_concurrency(pool.new{workers = 1}, 6))
  end)

  it("runs the initializer in a worker before the pool's items there; the function sees its globals", function()
    local p = pool.new{workers = 2, initializer = function(base, tag)
      POOL_SPEC_BASE, POOL_SPEC_TAG = base, tag
    end, initargs = {100, "t"}}
    local r = p:map(function(x) return POOL_SPEC_TAG .. (x + POOL_SPEC_BASE) end, range(20), {chunksize = 1})
    for i = 1, 20 do assert.equal("t" .. (100 + i), r[i]) end
    -- not in the caller's globals, nor in a worker's _G
    assert.is_nil(POOL_SPEC_BASE)
    assert.is_nil(parx.spawn(function() return rawget(_G, "POOL_SPEC_BASE") end):join())
    -- another pool does not see them
    local q = pool.new{workers = 2}
    assert.same({"nil"}, q:map(function() return tostring(POOL_SPEC_BASE) end, {1}))
  end)

  it("keeps a worker's pool state between calls and runs the initializer once per worker", function()
    local p = pool.new{workers = 1, initializer = function() POOL_SPEC_N = 0 end}
    local function count() POOL_SPEC_N = POOL_SPEC_N + 1; return POOL_SPEC_N end
    local a = p:map(count, range(4), {chunksize = 1})
    local b = p:map(count, range(4), {chunksize = 1})
    local total = 0
    for i = 1, 4 do total = math.max(total, a[i], b[i]) end
    -- 8 items over at most pool.size() worker VMs, each counting from 0
    assert.is_true(total >= math.ceil(8 / pool.size()))
    assert.is_true(total <= 8)
  end)

  it("max_tasks_per_worker = n runs the initializer again after n tasks (chunks) in a VM", function()
    local p = pool.new{workers = 1, initializer = function() POOL_SPEC_K = 0 end, max_tasks_per_worker = 3}
    local r = p:map(function() POOL_SPEC_K = POOL_SPEC_K + 1; return POOL_SPEC_K end, range(12), {chunksize = 1})
    for i = 1, 12 do assert.is_true(r[i] >= 1 and r[i] <= 3, "item " .. i .. ": " .. tostring(r[i])) end
  end)

  it("an error in the initializer fails the call with it", function()
    local p = pool.new{workers = 1, initializer = function() error("no database", 0) end}
    local ok, err = pcall(p.map, p, function(x) return x end, {1})
    assert.is_false(ok)
    assert.matches("no database", tostring(err))
  end)

  it("raises on unknown option names, listing the valid ones", function()
    local ok, err = pcall(pool.new, {processes = 2})
    assert.is_false(ok)
    assert.matches("unknown option 'processes' %(known: initargs, initializer, max_tasks_per_worker, workers%)", err)
    assert.has_error(function() pool.new{workers = 0} end)
    assert.has_error(function() pool.new{initializer = 42} end)
    assert.has_error(function() pool.new{max_tasks_per_worker = 1.5} end)
    local p = pool.new{workers = 1}
    assert.has_error(function() p:map(function(x) return x end, {1}, {processes = 2}) end)
  end)

  it("close refuses new work; join waits for its map_async and submit tasks", function()
    local p = pool.new{workers = 2}
    local done = {}
    local t1 = p:map_async(function(x) parx.sleep(0.05); return x end, {1, 2},
                           {callback = function(r) done.map = #r end})
    local t2 = p:submit(function() parx.sleep(0.05); return "s" end)
    assert.has_error(function() p:join() end, "pool.join: close the pool first")
    p:close()
    assert.has_error(function() p:map(function(x) return x end, {1}) end)
    assert.has_error(function() p:submit(function() end) end)
    p:join()
    assert.is_true(t1:done() and t2:done())
    assert.equal("s", t2:join())
    assert.matches("closed", tostring(p))
  end)
end)

-- The VM a task runs on, and the threads of this process (Linux).
local function vm_id() return require("parx.c.task").vm_id() end
local function nthreads()
  local names = parx.fs.readdir("/proc/self/task")
  return names and #names
end

-- Poll until f() is true (at most 10 s: a hang guard, not a timing).
local function eventually(f)
  local deadline = parx.now() + 10
  while not f() and parx.now() < deadline do parx.sleep(0.005) end
  return f()
end

-- The thread count once pools that earlier specs dropped are collected and
-- their threads gone (the same count twice, 50 ms apart).
local function settled_threads()
  collectgarbage()
  collectgarbage()
  local last = nthreads()
  eventually(function()
    parx.sleep(0.05)
    local now = nthreads()
    local same = now == last
    last = now
    return same
  end)
  return last
end

describe("parx.pool.new's own VMs", function()
  it("a pool of 2 runs its work on exactly 2 VMs of its own, none of them a runtime worker", function()
    local default = {}
    for i = 1, 40 do default[parx.spawn(vm_id):join()] = true end
    for _, id in ipairs(pool.map(function() parx.sleep(0.002) return vm_id() end, range(20), {chunksize = 1})) do
      default[id] = true
    end
    local p = pool.new{workers = 2}
    local seen, n = {}, 0
    local ids = p:map(function() parx.sleep(0.01) return vm_id() end, range(8), {chunksize = 1})
    for i = 1, 6 do ids[#ids + 1] = p:submit(function() parx.sleep(0.005) return vm_id() end):join() end
    for _, id in ipairs(ids) do
      if not seen[id] then seen[id], n = true, n + 1 end
      assert.is_nil(default[id], "VM " .. id .. " is one of the runtime's")
      assert.are_not.equal(0, id)
    end
    assert.equal(2, n)
    p:close()
    p:join()
  end)

  it("its VMs are in parx.trace.dump, each task with its wait and traceback, and in parx.stats(), marked pool", function()
    local p = pool.new{workers = 2}
    local ch, where = parx.channel(), parx.channel()
    local t = p:submit(function(c, w)
      w:send(vm_id())
      local v = c:recv()
      return v
    end, ch, where)
    local id = where:recv()
    assert.truthy(eventually(function() return parx.trace.dump():find("parked on channel recv", 1, true) end))
    local text = parx.trace.dump()
    assert.matches("\npool worker " .. id .. ":\n  task %d+: parked on channel recv %(channel %d+%) for [%d.]+ s\n" ..
                   "    stack traceback:\n", text)
    local s, named, listed = parx.stats(), 0, false
    for _, v in ipairs(s.vms) do
      if v.pool then
        assert.matches("^pool worker %d+$", v.name)
        named = named + 1
        listed = listed or v.name == "pool worker " .. id
      end
    end
    assert.is_true(listed, "pool worker " .. id .. " not in parx.stats()")
    assert.equal(named, s.pool_workers)
    ch:send(7)
    assert.equal(7, t:join())
    p:close()
    p:join()
  end)

  it("starts its threads at creation and ends them at close/join", function()
    if not nthreads() then pending("no /proc/self/task") return end
    parx.spawn(function() end):join() -- the runtime's workers are up
    local before = settled_threads()
    local p = pool.new{workers = 3}
    assert.equal(before + 3, nthreads())
    assert.same({2, 3}, p:map(function(x) return x + 1 end, {1, 2}))
    p:close()
    p:join()
    assert.is_true(eventually(function() return nthreads() == before end))
  end)

  it("a pool that is collected without close() ends its VMs", function()
    if not nthreads() then pending("no /proc/self/task") return end
    settled_threads()
    local during
    local function use_and_drop()
      local p = pool.new{workers = 2, initializer = function() POOL_SPEC_GC = 1 end}
      during = nthreads()
      return p:map(function() return POOL_SPEC_GC end, {1})
    end
    assert.same({1}, use_and_drop())
    assert.is_true(eventually(function() collectgarbage() return nthreads() <= during - 2 end))
  end)

  it("runs the initializer once in each of its VMs; its state is not the default pool's", function()
    local runs = parx.atomic(0)
    local p = pool.new{workers = 2, initializer = function(r) POOL_SPEC_INIT = r:add(1) end, initargs = {runs}}
    local got = p:map(function() parx.sleep(0.005) return POOL_SPEC_INIT end, range(10), {chunksize = 1})
    local values = {}
    for i = 1, 10 do values[got[i]] = true end
    assert.same({[1] = true, [2] = true}, values)
    assert.equal(2, runs:get())
    assert.same({"nil", "nil"}, pool.map(function() return tostring(POOL_SPEC_INIT) end, {1, 2}))
    assert.is_nil(parx.spawn(function() return POOL_SPEC_INIT end):join())
    p:close()
  end)

  it("max_tasks_per_worker gives a fresh VM (a new Lua state, the initializer again) after n tasks", function()
    local runs = parx.atomic(0)
    local p = pool.new{workers = 1, max_tasks_per_worker = 2,
                       initializer = function(r) POOL_SPEC_GEN = r:add(1) end, initargs = {runs}}
    local gens, marks = {}, {}
    for i = 1, 6 do
      local gen, mark = p:submit(function()
        local seen = rawget(_G, "POOL_SPEC_MARK") -- in the VM's own _G: gone with the VM
        rawset(_G, "POOL_SPEC_MARK", true)
        return POOL_SPEC_GEN, seen == true
      end):join()
      gens[i], marks[i] = gen, mark
    end
    assert.same({1, 1, 2, 2, 3, 3}, gens)
    assert.same({false, true, false, true, false, true}, marks)
    -- a map's chunk is one task: 6 chunks make 3 more fresh VMs
    local r = p:map(function() return POOL_SPEC_GEN end, range(6), {chunksize = 1})
    assert.same({4, 4, 5, 5, 6, 6}, r)
    p:close()
    p:join()
  end)

  it("an error in the initializer is raised by every task of the pool, naming the initializer", function()
    local p = pool.new{workers = 1, initializer = function() error("no database", 0) end}
    local ok, err = pcall(function() return p:submit(function() return 1 end):join() end)
    assert.is_false(ok)
    assert.matches("initializer failed.*no database", tostring(err))
  end)

  it("a closed pool raises a clear error on use", function()
    local p = pool.new{workers = 1}
    p:close()
    for _, call in ipairs({
      function() return p:map(function(x) return x end, {1}) end,
      function() return p:submit(function() end) end,
      function() return p:imap(function(x) return x end, {1}) end,
      function() return p:reduce(function(a, b) return a + b end, {1, 2}) end,
    }) do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("pool%.%a+: the pool is closed", err)
    end
  end)

  it("a script that forgets close() exits, its pool's VMs stopped", function()
    local file = os.tmpname()
    parx.fs.writefile(file, [[
      local p = parx.pool.new{workers = 2, initializer = function() BASE = 10 end}
      print(table.concat(p:map(function(x) return x + BASE end, {1, 2, 3}), " "))
      local later = p:submit(function() parx.sleep(0.05) return "late" end)
      print(later:join())
    ]])
    local r = assert(parx.process.exec(os.getenv("PARX_BIN") or "build/parx", {file},
                                       {env = {PARX_WORKERS = "2"}, timeout = 30}))
    os.remove(file)
    assert.equal(0, r.status, r.stderr)
    assert.equal("11 12 13\nlate\n", r.stdout)
  end)
end)

describe("pool.map_async and pool.submit callbacks", function()
  it("map_async returns a task whose join gives the results", function()
    local t = pool.map_async(function(x) return x + 1 end, {1, 2, 3})
    assert.same({2, 3, 4}, t:join())
  end)

  it("callback gets the results on the caller's VM", function()
    local got -- an upvalue: only a callback on this VM can set it
    local t = pool.map_async(function(x) return x * 10 end, {1, 2}, {callback = function(r) got = r end})
    t:join()
    parx.wait({t})
    for _ = 1, 100 do if got then break end parx.sleep(0.01) end
    assert.same({10, 20}, got)
  end)

  it("error_callback gets the error of a failed map_async, and join raises it", function()
    local err
    local t = pool.map_async(function(x) if x == 2 then error("bad item", 0) end return x end, {1, 2, 3},
                             {error_callback = function(e) err = e end})
    assert.has_error(function() t:join() end)
    for _ = 1, 100 do if err then break end parx.sleep(0.01) end
    assert.matches("bad item", tostring(err))
  end)

  it("submit with callback and error_callback", function()
    local ok_v, err_v
    local a = pool.submit({callback = function(a, b) ok_v = a .. b end}, function() return "x", "y" end)
    local b = pool.submit({error_callback = function(e) err_v = e end},
                          function() error("boom", 0) end)
    a:join()
    pcall(b.join, b)
    for _ = 1, 100 do if ok_v and err_v then break end parx.sleep(0.01) end
    assert.equal("xy", ok_v)
    assert.matches("boom", tostring(err_v))
  end)

  it("rejects callbacks that are not functions and unknown map options", function()
    assert.has_error(function() pool.map_async(function() end, {1}, {callback = 42}) end)
    assert.has_error(function() pool.submit({error_callback = "x"}, function() end) end)
    assert.has_error(function() pool.map_async(function(x) return x end, {1}, {processes = 2}) end)
  end)
end)
