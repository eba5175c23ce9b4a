-- parx.pool: map, imap, imap_unordered, starmap, reduce, parallel_for,
-- submit and size over the runtime's workers.

local pool = parx.pool

local function serial_map(fn, list)
  local out = {}
  for i = 1, #list do out[i] = fn(list[i]) end
  return out
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local function square(x) return x * x end

describe("pool.size and pool.submit", function()
  it("size is the worker count and submit spawns like parx.spawn", function()
    assert.is_true(pool.size() >= 1)
    assert.equal(42, pool.submit(function(a, b) return a * b end, 6, 7):join())
    assert.equal(42, pool.submit({callback = function() end}, function(a, b) return a * b end, 6, 7):join())
  end)
end)

describe("pool.map", function()
  for _, n in ipairs({0, 1, 7, 100000}) do
    it("equals the serial map for " .. n .. " items", function()
      local xs = range(n)
      local r = pool.map(square, xs)
      assert.equal(n, #r)
      assert.same(serial_map(square, xs), r)
    end)
  end

  it("gives the serial result for every chunk size", function()
    local xs = range(103)
    local want = serial_map(square, xs)
    for _, cs in ipairs({1, 2, 3, 10, 50, 102, 103, 104, 1000}) do
      assert.same(want, (pool.map(square, xs, {chunksize = cs})))
    end
  end)

  it("maps nil-free mixed values and keeps integers, doubles and binary strings", function()
    local xs = {1, -2.5, 2^53, 0.1, "text", "bin\0ary\255", true, false,
                {1, 2, {3, {4}}}, {a = 1, b = {c = "d"}}, 1e300, -0.0, 3}
    local id = function(v) return v end
    local r = pool.map(id, xs)
    assert.same(xs, r)
    assert.equal("bin\0ary\255", r[6])
    assert.equal(2^53, r[3])
    local kinds = pool.map(function(v) return type(v) end, xs)
    assert.same(serial_map(function(v) return type(v) end, xs), kinds)
  end)

  it("carries long strings, infinities, nan and -0.0 in small and big chunks", function()
    local long = ("x"):rep(1000) .. "\0end"
    local xs = {long, 1 / 0, -1 / 0, -0.0, 0 / 0, "", "short", 2^-1074}
    for _, cs in ipairs({1, 3, 100}) do
      local r = pool.map(function(v) return v end, xs, {chunksize = cs})
      assert.equal(long, r[1])
      assert.equal(1 / 0, r[2])
      assert.equal(-1 / 0, r[3])
      assert.equal(-1 / 0, 1 / r[4]) -- the sign of zero survives
      assert.is_true(r[5] ~= r[5])
      assert.equal("", r[6])
      assert.equal("short", r[7])
      assert.equal(2^-1074, r[8])
    end
  end)

  it("switches between numbers and other values inside a chunk, both ways", function()
    -- numeric inputs, results that stop being numbers halfway through a chunk
    local xs = range(1000)
    local f = function(x) if x % 100 > 50 then return "s" .. x end return x * 2 end
    assert.same(serial_map(f, xs), (pool.map(f, xs, {chunksize = 300})))
    -- inputs that stop being numbers halfway through a chunk
    local ys = range(1000)
    ys[450] = "str"
    ys[451] = true
    local g = function(v) return type(v) == "number" and v + 1 or v end
    assert.same(serial_map(g, ys), (pool.map(g, ys, {chunksize = 300})))
    -- and the iterators
    local got = {}
    for i, v in pool.imap(f, xs, {chunksize = 64}) do got[i] = v end
    assert.same(serial_map(f, xs), got)
    got = {}
    for i, v in pool.imap_unordered(g, ys, {chunksize = 64}) do got[i] = v end
    assert.same(serial_map(g, ys), got)
  end)

  it("gives the right results when many maps run at once", function()
    local tasks = {}
    for t = 1, 6 do
      tasks[t] = parx.async(function()
        local xs = range(20000 + t)
        local r = pool.map(function(x) return x * t end, xs)
        for i = 1, #xs do if r[i] ~= i * t then return false end end
        return #r == #xs
      end)
    end
    for t = 1, 6 do assert.is_true(tasks[t]:join()) end
  end)

  it("keeps nan, -0.0, infinities and big integers in a list of numbers", function()
    local r = pool.map(function(v) return v end, {0 / 0, -0.0, 1 / 0, -1 / 0, 2^53 + 2, 5e-324})
    assert.is_true(r[1] ~= r[1])
    assert.equal(-1 / 0, 1 / r[2])
    assert.equal(1 / 0, r[3])
    assert.equal(-1 / 0, r[4])
    assert.equal(2^53 + 2, r[5])
    assert.equal(5e-324, r[6])
  end)

  it("keeps nil results in position", function()
    local xs = range(50)
    local r = pool.map(function(x) if x % 3 == 0 then return nil end return x end, xs,
                       {chunksize = 4})
    for i = 1, 50 do
      if i % 3 == 0 then assert.is_nil(r[i]) else assert.equal(i, r[i]) end
    end
  end)

  it("returns only the result table, so unpack(pool.map(f, xs)) gives every result", function()
    assert.equal(1, select("#", pool.map(square, {1, 2, 3})))
    assert.equal(1, select("#", pool.map(square, {})))
    assert.same({1, 4, 9}, {unpack(pool.map(square, {1, 2, 3}))})
    assert.equal("1 4 9", ("%d %d %d"):format(unpack(pool.map(square, {1, 2, 3}))))
    assert.equal(1, select("#", pool.starmap(math.max, {{1, 2}, {4, 3}})))
  end)

  it("keeps only the first result of fn", function()
    assert.same({1, 2}, (pool.map(function(x) return x, "extra" end, {1, 2})))
  end)

  it("sends upvalues, tables with cycles and top-level helpers with fn", function()
    local offset = 10
    local shared = {k = 5}
    shared.self = shared
    local r = pool.map(function(x)
      assert(shared.self == shared)
      return x + offset + shared.k
    end, {1, 2, 3})
    assert.same({16, 17, 18}, r)
    -- a standard C function is sent by name
    assert.same({1, 2, 3}, (pool.map(math.sqrt, {1, 4, 9})))
  end)

  it("lets fn use pcall", function()
    local r = pool.map(function(x)
      local ok = pcall(function() if x % 2 == 0 then error("even") end end)
      return ok
    end, {1, 2, 3})
    assert.same({true, false, true}, r)
  end)

  it("passes shared objects (arrays, channels) as items, upvalues and results", function()
    local made = pool.map(function(i)
      local a = parx.array("int32", {2})
      a:set(1, i * 10)
      return a
    end, {1, 2, 3})
    assert.same({10, 20, 30}, {made[1]:get(1), made[2]:get(1), made[3]:get(1)})
    local chans = {parx.channel(1), parx.channel(1)}
    pool.map(function(ch) ch:send("hi") end, chans, {chunksize = 1})
    assert.equal("hi", (chans[1]:recv()))
    assert.equal("hi", (chans[2]:recv()))
    local out = parx.channel()
    pool.map(function(i) out:send(i) end, {1, 2, 3, 4})
    local sum = 0
    for _ = 1, 4 do sum = sum + out:recv() end
    assert.equal(10, sum)
  end)

  it("works on a shared parx.array by reference", function()
    local a = parx.array("float64", {100})
    for i = 1, 100 do a:set(i, i) end
    local r = pool.map(function(i) return a:get(i) * 2 end, range(100), {chunksize = 7})
    assert.same(serial_map(function(i) return 2 * i end, range(100)), r)
  end)

  it("re-raises an error of fn with the worker's traceback, and the pool still works", function()
    local ok, err = pcall(pool.map, function(x)
      if x == 77 then error("bad item " .. x) end
      return x
    end, range(200), {chunksize = 5})
    assert.is_false(ok)
    assert.matches("bad item 77", err)
    assert.matches("stack traceback", err)
    assert.matches("pool_spec", err)
    -- the pool is fine afterwards
    assert.same(serial_map(square, range(1000)), (pool.map(square, range(1000))))
  end)

  it("re-raises a non-string error value as it is", function()
    local ok, err = pcall(pool.map, function(x) error({code = x}) end, {5})
    assert.is_false(ok)
    assert.same({code = 5}, err)
  end)

  it("names an item that cannot be sent", function()
    local xs = range(20)
    xs[13] = coroutine.create(function() end)
    local ok, err = pcall(pool.map, square, xs, {chunksize = 5})
    assert.is_false(ok)
    assert.matches("pool.map", err)
    assert.matches("coroutine", err)
    assert.matches("13", err)
    assert.same({1, 4}, (pool.map(square, {1, 2})))
  end)

  it("names an upvalue of fn that cannot be sent", function()
    local co = coroutine.create(function() end)
    local ok, err = pcall(pool.map, function(x) return co end, {1})
    assert.is_false(ok)
    assert.matches("co", err)
    assert.matches("coroutine", err)
  end)

  it("reports a result that cannot be sent back", function()
    local ok, err = pcall(pool.map, function(x) return coroutine.create(function() end) end, {1})
    assert.is_false(ok)
    assert.matches("cannot be sent back", err)
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() pool.map(nil, {}) end)
    assert.has_error(function() pool.map(square, 5) end)
    assert.has_error(function() pool.map(square, {1}, {chunksize = 0}) end)
    assert.has_error(function() pool.map(square, {1}, {chunksize = 1.5}) end)
    assert.has_error(function() pool.map(square, {1}, {timeout = -1}) end)
    assert.has_error(function() pool.map(square, {1}, "opts") end)
  end)

  it("pool.map over a list with holes raises", function()
    local holey = {1, 2}
    holey[10] = 10                  -- #holey is 2: item 10 would be dropped
    assert.equal(2, #holey)
    local ok, err = pcall(pool.map, square, holey)
    assert.is_false(ok)
    assert.matches("hole", err)
    assert.matches("list%[10%]", err)
    assert.has_error(function() for _ in pool.imap(square, holey) do end end)
    assert.has_error(function() pool.reduce(function(a, b) return a + b end, holey) end)
    local empty_but_4 = {}
    empty_but_4[4] = 1              -- #t is 0
    assert.has_error(function() pool.map(square, empty_but_4) end)
    -- other keys are not items: no error
    local named = {1, 2, 3, n = 3, name = "x", [0] = 0, [-1] = 1, [2.5] = 1}
    assert.same({1, 4, 9}, (pool.map(square, named)))
  end)

  it("pool.map maps items 1..opts.n, nils included", function()
    local holey = {1, 2}
    holey[4] = 4
    local r = pool.map(function(x) return x and x * x or -1 end, holey, {n = 4})
    assert.same({1, 4, -1, 16}, r)
    assert.same({1}, (pool.map(square, {1, 2, 3}, {n = 1})))
    assert.has_error(function() pool.map(square, {1}, {n = -1}) end)
    assert.has_error(function() pool.map(square, {1}, {n = 0 / 0}) end)
    assert.has_error(function() pool.map(square, {1}, {n = 1.5}) end)
    assert.has_error(function() pool.map(square, {}, {n = 2 ^ 40}) end)
  end)

  it("a chunksize beyond the list's length is one chunk", function()
    assert.same({1, 4, 9}, (pool.map(square, {1, 2, 3}, {chunksize = 1e15})))
    assert.same({{1, 3}}, (pool.parallel_for(1, 3, function(lo, hi) return {lo, hi} end,
                                             {chunksize = 2 ^ 53})))
    assert.has_error(function() pool.map(square, {1}, {chunksize = math.huge}) end)
    assert.has_error(function() pool.map(square, {1}, {chunksize = 0 / 0}) end)
  end)

  it("pool.map rejects unknown option names", function()
    local ok, err = pcall(pool.map, square, {1}, {chunk_size = 2})
    assert.is_false(ok)
    assert.matches("unknown option 'chunk_size'", err)
    assert.has_error(function() pool.parallel_for(1, 2, function() end, {timout = 1}) end)
    assert.has_error(function() pool.map(square, {1}, {workers = 0}) end)
  end)

  it("opts.workers caps how many items run at once", function()
    local inside, worst = parx.atomic(0), parx.atomic(0)
    local r = pool.map(function(x)
      local now = inside:add(1)
      while true do
        local w = worst:get()
        if now <= w or worst:cas(w, now) then break end
      end
      parx.sleep(0.005)
      inside:add(-1)
      return x
    end, range(8), {workers = 1, chunksize = 1})
    assert.same(range(8), r)
    assert.equal(1, worst:get())
  end)

  it("opts.timeout = math.huge means no limit", function()
    assert.same({1, 4, 9}, (pool.map(square, {1, 2, 3}, {timeout = math.huge})))
  end)

  it("returns nil, 'timeout' when opts.timeout passes, and the pool still works", function()
    local r, why = pool.map(function(x) parx.sleep(5); return x end, range(4),
                            {timeout = 0.05, chunksize = 1})
    assert.is_nil(r)
    assert.equal("timeout", why)
    assert.same({1, 4, 9}, (pool.map(square, {1, 2, 3})))
  end)

  it("stops handing out chunks when its caller is cancelled", function()
    local done = parx.atomic(0)
    local r, why = parx.timeout(0.05, pool.map, function(x)
      parx.sleep(0.02)
      done:add(1)
      return x
    end, range(400), {chunksize = 1})
    assert.is_nil(r)
    assert.equal("timeout", why)
    parx.sleep(0.2)
    local settled = done:get()
    assert.is_true(settled < 400)
    parx.sleep(0.1)
    assert.equal(settled, done:get())
    assert.same({1, 4, 9}, (pool.map(square, {1, 2, 3})))
  end)

  it("accepts opts.progress (no bar when stderr is not a terminal)", function()
    assert.same(serial_map(square, range(300)), (pool.map(square, range(300), {progress = true})))
  end)

  it("can be called from inside a mapped function", function()
    local r = pool.map(function(x)
      local inner = parx.pool.map(function(y) return y + 1 end, {x, x})
      return inner[1] + inner[2]
    end, range(6), {chunksize = 1})
    assert.same({4, 6, 8, 10, 12, 14}, r)
  end)

  it("lets fn park (sleep) without blocking the other items", function()
    local r = pool.map(function(x) parx.sleep(0.001); return -x end, range(20), {chunksize = 1})
    assert.same(serial_map(function(x) return -x end, range(20)), r)
  end)

  -- Lane buffers of 2 MiB and more are mapped huge pages, kept between
  -- calls (pool_transfer.c): sizes that are not a multiple of 2 MiB, a
  -- bigger list after a smaller one, and a smaller one reusing a bigger
  -- buffer all keep every result.
  it("maps long lists of numbers through reused and resized lane buffers", function()
    for _, n in ipairs({300001, 700000, 262144, 300001}) do
      local xs = range(n)
      local r = pool.map(function(x) return x * 2 + 0.5 end, xs)
      assert.equal(n, #r)
      assert.equal(2.5, r[1])
      assert.equal(n * 2 + 0.5, r[n])
      assert.equal(262144 * 2 + 0.5, r[262144])
    end
  end)
end)

describe("pool and --trace", function()
  it("records a slice per chunk on the worker that ran it", function()
    local bin = os.getenv("PARX_BIN") or "build/parx"
    local out = os.tmpname()
    local cmd = ("%s --workers 2 --trace %s -e 'parx.pool.map(function(x) return x end, {1, 2, 3, 4}, {chunksize = 2})'"):format(bin, out)
    local rc = os.execute(cmd)
    assert.is_true(rc == 0 or rc == true)
    local f = assert(io.open(out))
    local json = f:read("*a")
    f:close()
    os.remove(out)
    assert.matches('"cat":"pool.chunk"', json)
    assert.matches("pool chunk: items 1%-2", json)
    assert.matches("pool chunk: items 3%-4", json)
  end)
end)

describe("pool.starmap", function()
  it("calls fn with each argument list", function()
    local args = {}
    for i = 1, 50 do args[i] = {i, i + 1} end
    local r = pool.starmap(function(a, b) return a * b end, args)
    for i = 1, 50 do assert.equal(i * (i + 1), r[i]) end
    assert.same({}, (pool.starmap(function() end, {})))
  end)

  it("passes nil arguments kept by an n field", function()
    local r = pool.starmap(function(a, b, c) return tostring(a) .. tostring(b) .. tostring(c) end,
                           {{1, nil, 3, n = 3}, {n = 0}})
    assert.same({"1nil3", "nilnilnil"}, r)
  end)

  it("rejects an item that is not an argument list", function()
    local ok, err = pcall(pool.starmap, function() end, {{1}, 2})
    assert.is_false(ok)
    assert.matches("item 2", err)
  end)
end)

describe("pool.imap", function()
  it("streams index, value pairs in order", function()
    local xs = range(1000)
    local seen = 0
    for i, v in pool.imap(square, xs, {chunksize = 13}) do
      seen = seen + 1
      assert.equal(seen, i)
      assert.equal(i * i, v)
    end
    assert.equal(1000, seen)
  end)

  it("does not stop at a nil value", function()
    local got = {}
    for i, v in pool.imap(function(x) if x == 2 then return nil end return x end, {1, 2, 3}) do
      got[#got + 1] = {i, v}
    end
    assert.same({{1, 1}, {2, nil}, {3, 3}}, got)
  end)

  it("yields nothing for an empty list", function()
    for _ in pool.imap(square, {}) do error("unreachable") end
  end)

  it("raises a worker's error from the loop", function()
    assert.has_error(function()
      for _ in pool.imap(function(x) if x == 5 then error("five") end return x end, range(10)) do end
    end)
    assert.same({1, 4}, (pool.map(square, {1, 2})))
  end)

  it("can be left early, and the pool still works", function()
    for i in pool.imap(square, range(10000), {chunksize = 10}) do
      if i == 3 then break end
    end
    collectgarbage()
    assert.same({1, 4}, (pool.map(square, {1, 2})))
  end)
end)

describe("pool.imap_unordered", function()
  it("yields every index exactly once with its value", function()
    local n = 5000
    local seen, count = {}, 0
    for i, v in pool.imap_unordered(square, range(n), {chunksize = 7}) do
      assert.is_nil(seen[i])
      seen[i] = true
      assert.equal(i * i, v)
      count = count + 1
    end
    assert.equal(n, count)
  end)

  it("yields results as they finish", function()
    local order = {}
    for i in pool.imap_unordered(function(x) parx.sleep(x); return x end, {0.3, 0.01},
                                 {chunksize = 1}) do
      order[#order + 1] = i
    end
    assert.same({2, 1}, order)
  end)
end)

describe("pool.reduce", function()
  it("sums like a serial fold", function()
    local xs = range(100000)
    local want = 0
    for i = 1, #xs do want = want + xs[i] end
    assert.equal(want, pool.reduce(function(a, b) return a + b end, xs))
    assert.equal(want + 10, pool.reduce(function(a, b) return a + b end, xs, 10))
  end)

  it("keeps the order of an associative, non-commutative fn", function()
    local xs = {}
    for i = 1, 300 do xs[i] = string.char(65 + i % 26) end
    local concat = function(a, b) return a .. b end
    assert.equal(table.concat(xs), pool.reduce(concat, xs, nil, {chunksize = 7}))
    assert.equal(">" .. table.concat(xs), pool.reduce(concat, xs, ">"))
  end)

  it("handles one item, and an empty list with or without init", function()
    local add = function(a, b) return a + b end
    assert.equal(5, pool.reduce(add, {5}))
    assert.equal(7, pool.reduce(add, {}, 7))
    assert.has_error(function() pool.reduce(add, {}) end)
  end)

  it("re-raises an error of fn", function()
    local ok, err = pcall(pool.reduce, function(a, b) if b == 50 then error("at fifty") end return a + b end,
                          range(100))
    assert.is_false(ok)
    assert.matches("at fifty", err)
  end)
end)

describe("pool.parallel_for", function()
  it("covers first..last exactly once with ranges, results in range order", function()
    local parts, n = pool.parallel_for(1, 1000, function(lo, hi) return {lo, hi} end, {chunksize = 64})
    assert.equal(#parts, n)
    local expect = 1
    for k = 1, n do
      assert.equal(expect, parts[k][1])
      assert.is_true(parts[k][2] >= parts[k][1])
      expect = parts[k][2] + 1
    end
    assert.equal(1001, expect)
  end)

  it("sums in place over a shared array like a serial loop", function()
    local n = 100000
    local a = parx.array("float64", {n})
    local d = a.data
    for i = 0, n - 1 do d[i] = i end
    local parts = pool.parallel_for(0, n - 1, function(lo, hi)
      local p = a.data
      local s = 0
      for i = lo, hi do s = s + p[i] end
      return s
    end)
    local total = 0
    for _, s in ipairs(parts) do total = total + s end
    assert.equal(n * (n - 1) / 2, total)
  end)

  it("writes in place into a shared array", function()
    local n = 5000
    local a = parx.array("int64", {n})
    pool.parallel_for(1, n, function(lo, hi)
      for i = lo, hi do a:set(i, i * 3) end
    end, {chunksize = 100})
    for i = 1, n do assert.equal(i * 3, a:get(i)) end
  end)

  it("does nothing on an empty range and handles a single index", function()
    local parts, n = pool.parallel_for(5, 4, function() error("called") end)
    assert.same({}, parts)
    assert.equal(0, n)
    assert.same({{7, 7}}, (pool.parallel_for(7, 7, function(lo, hi) return {lo, hi} end)))
  end)

  it("re-raises an error of fn and rejects bad arguments", function()
    assert.has_error(function() pool.parallel_for(1, 10, function() error("nope") end) end)
    assert.has_error(function() pool.parallel_for(1.5, 10, function() end) end)
    assert.has_error(function() pool.parallel_for(1, 10, 5) end)
  end)

  it("parallel_for(1, 1e300) raises a clear error", function()
    local function fn() end
    local ok, err = pcall(pool.parallel_for, 1, 1e300, fn)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'pool.parallel_for' %(1e%+300 is not an integer", err)
    ok, err = pcall(pool.parallel_for, 0 / 0, 10, fn)
    assert.matches("bad argument #1 .*nan is not an integer", err)
    ok, err = pcall(pool.parallel_for, 1, 2.5, fn)
    assert.matches("bad argument #2 .*2.5 is not an integer", err)
    ok, err = pcall(pool.parallel_for, -math.huge, 1, fn)
    assert.matches("bad argument #1 .*inf is not an integer", err)
    ok, err = pcall(pool.parallel_for, -2 ^ 53, 2 ^ 53, fn)
    assert.matches("more than 2%^53 indices", err)
    ok, err = pcall(pool.parallel_for, 1, 2 ^ 40, fn, {chunksize = 1})
    assert.matches("pass a larger opts.chunksize", err)
    -- the largest exact bounds still work
    assert.same({{2 ^ 53 - 1, 2 ^ 53}},
                (pool.parallel_for(2 ^ 53 - 1, 2 ^ 53, function(lo, hi) return {lo, hi} end,
                                       {chunksize = 2})))
  end)
end)

describe("the seed examples (scripts/examples)", function()
  local bin = os.getenv("PARX_BIN") or "build/parx"
  local function run(name)
    local p = io.popen(("%s --workers 2 scripts/examples/%s.lua 2>&1"):format(bin, name))
    local out = p:read("*a")
    p:close()
    return out
  end

  it("factorials prints what the Python original prints", function()
    assert.equal("[6, 120, 3628800]\n[6, 120, 3628800]\n", run("factorials"))
  end)

  it("sum_squares prints the exact sum", function()
    assert.equal("1 到 100 万的平方和为:333333833333500000\n", run("sum_squares"))
  end)

  it("submit_as_completed prints results as they complete", function()
    assert.equal("结果: 0\n结果: 1\n结果: 4\n结果: 9\n", run("submit_as_completed"))
  end)

  it("map_reduce prints the sum of squares", function()
    assert.equal("Sum of squares: 285\n", run("map_reduce"))
  end)
end)
