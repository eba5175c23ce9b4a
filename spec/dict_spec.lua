-- parx.dict: a concurrent hash map shared by reference across VMs.

describe("parx.dict", function()
  it("stores, reads and deletes strings, numbers, booleans and tables by key", function()
    local d = parx.dict()
    d.a = 1
    d[2] = "two"
    d[true] = {x = {1, 2, 3}}
    d[2.5] = false
    d.long = string.rep("x", 1000)
    assert.equal(1, d.a)
    assert.equal("two", d[2])
    assert.same({x = {1, 2, 3}}, d[true])
    assert.is_false(d[2.5])
    assert.equal(1000, #d.long)
    assert.equal(5, #d)
    d.a = nil
    assert.is_nil(d.a)
    assert.equal(4, #d)
    assert.is_nil(d.missing)
    assert.equal("dflt", d:get("missing", "dflt"))
  end)

  it("treats -0 and 0, 1 and 1.0 as one key, as a table does", function()
    local d = parx.dict()
    d[0] = "zero"
    d[1.0] = "one"
    assert.equal("zero", d[-0])
    assert.equal("one", d[1])
    assert.equal(2, #d)
  end)

  it("rejects keys that are not strings, numbers or booleans, and NaN", function()
    local d = parx.dict()
    assert.has_error(function() d[{}] = 1 end)
    assert.has_error(function() return d[print] end)
    assert.has_error(function() d[0 / 0] = 1 end)
  end)

  it("gives copies: changing a value read from it does not change the dict", function()
    local d = parx.dict()
    d.t = {n = 1}
    local t = d.t
    t.n = 2
    assert.equal(1, d.t.n)
  end)

  it("stores functions (copied with their upvalues) but not coroutines", function()
    local d = parx.dict()
    local k = 3
    d.f = function(x) return x * k end
    assert.equal(21, d.f(7))
    assert.has_error(function() d.co = coroutine.create(print) end,
      "cannot store value in dict: cannot send argument #1 (a coroutine) to another VM")
  end)

  it("method names read as methods; d:get reads a key of that name", function()
    local d = parx.dict()
    d.keys = "data"
    assert.equal("function", type(d.keys))
    assert.equal("data", d:get("keys"))
  end)

  it("keys(), pairs() and values() follow insertion order", function()
    local d = parx.dict()
    local want = {}
    for i = 1, 100 do
      local k = "k" .. (i * 7919 % 1000)
      if not d[k] then want[#want + 1] = k end
      d[k] = i
    end
    assert.same(want, d:keys())
    local seen = {}
    for k, v in d:pairs() do seen[#seen + 1] = k; assert.equal(d[k], v) end
    assert.same(want, seen)
    assert.equal(#want, #d:values())
    d[want[1]] = nil
    d[want[1]] = 0 -- re-inserted: now last
    assert.equal(want[1], d:keys()[#want])
  end)

  it("pairs() skips keys removed during the loop", function()
    local d = parx.dict()
    d.a = 1
    d.b = 2
    d.c = 3
    local seen = {}
    for k in d:pairs() do
      seen[#seen + 1] = k
      if k == "a" then d.b = nil end
    end
    assert.same({"a", "c"}, seen)
  end)

  it("pop removes and returns, clear empties, copy makes a table", function()
    local d = parx.dict()
    d.x, d.y = 1, 2
    assert.same({x = 1, y = 2}, d:copy())
    assert.equal(1, d:pop("x"))
    assert.is_nil(d:pop("x"))
    assert.equal("none", d:pop("x", "none"))
    d:clear()
    assert.equal(0, #d)
    assert.same({}, d:keys())
  end)

  it("is shared by reference with spawned tasks, inside tables and channels", function()
    local d = parx.dict()
    d.n = 1
    parx.spawn(function(d) d.from_task = d.n + 1 end, d):join()
    assert.equal(2, d.from_task)
    local ch = parx.channel()
    ch:send({dict = d})
    local got = ch:recv()
    got.dict.via_channel = true
    assert.is_true(d.via_channel)
    d.self = {d}
    assert.is_true(d.self[1].via_channel)
    d.self = nil
  end)

  it("update is atomic: 4 tasks on 2 workers lose no increment", function()
    local d = parx.dict()
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = parx.spawn(function(d, i)
        for k = 1, 2000 do
          d:update("total", function(n) return (n or 0) + 1 end)
          d:update("k" .. (k % 16), function(n, by) return (n or 0) + by end, 1)
          d["t" .. i .. "_" .. (k % 50)] = k
          if k % 200 == 0 then parx.sleep(0) end
        end
      end, d, i)
    end
    for i = 1, 4 do tasks[i]:join() end
    assert.equal(8000, d.total)
    local sum = 0
    for k = 0, 15 do sum = sum + d["k" .. k] end
    assert.equal(8000, sum)
    assert.equal(1 + 16 + 4 * 50, #d)
  end)

  it("update with a function that parks still loses nothing", function()
    local d = parx.dict()
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = parx.spawn(function(d)
        for _ = 1, 50 do
          d:update("n", function(n) parx.sleep(0); return (n or 0) + 1 end)
        end
      end, d)
    end
    for i = 1, 4 do tasks[i]:join() end
    assert.equal(200, d.n)
  end)

  it("update returning nil deletes the key", function()
    local d = parx.dict()
    d.x = 5
    assert.is_nil(d:update("x", function() return nil end))
    assert.equal(0, #d)
  end)

  it("is not fooled by a forged metatable", function()
    local d = parx.dict()
    local fake = newproxy(true)
    getmetatable(fake).__index = d
    assert.has_error(function() d.get(fake, "x") end)
    assert.has_error(function() d.set(io.stdout, "x", 1) end)
    assert.equal("parx.dict", getmetatable(d))
  end)

  it("prints its size and its first 20 keys in insertion order, with their values", function()
    local d = parx.dict()
    d.b = 1
    d.a = {x = {y = {z = 1}}}
    d[3] = "s"
    d["two words"] = true
    assert.equal('parx.dict(4) {b = 1, a = {x = {y = {...}}}, [3] = "s", ["two words"] = true}',
      tostring(d))
    assert.equal(4, d:len())
    for i = 1, 30 do d[i] = i end
    local text = tostring(d)
    assert.truthy(text:match("^parx%.dict%(33%) {b = 1, "))
    assert.truthy(text:match(", %.%.%.}$"))
    assert.equal("parx.dict(0) {}", tostring(parx.dict()))
  end)

  it("d:set stores like d[k] = v, including keys spelled like methods, and nil deletes", function()
    local d = parx.dict()
    d:set("a", {1, 2})
    assert.same({1, 2}, d.a)
    d:set("keys", "stored")                 -- a key spelled like a method
    assert.equal("stored", d:get("keys"))
    assert.equal("function", type(d.keys))
    assert.equal(2, #d)
    parx.spawn(function(d) d:set(7, "from a worker") end, d):join()
    assert.equal("from a worker", d[7])
    d:set("a", nil)
    assert.is_nil(d.a)
    assert.equal(2, #d)
    assert.has_error(function() d:set({}, 1) end)
  end)
end)
