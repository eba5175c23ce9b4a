-- The reader's records by shape (runtime/core/marshal_shape.c): a table
-- whose keys are those of an earlier record of the message is made by
-- copying a template's hash nodes.  What arrives must be an ordinary table
-- in every way: its own fields, growable, shrinkable, iterable, shared where
-- the sender shared it; hostile bytes must still fail cleanly.
local dbg = require "parx.c.debug"

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function records(n, extra)
  local list = {}
  for i = 1, n do
    list[i] = {id = i, name = "n" .. i, score = i * 1.5, ok = i % 2 == 0}
    if extra then list[i].tag = "t" .. (i % 3) end
  end
  return list
end

describe("records by shape", function()
  it("is taken wherever the table layout is (PARX_NO_LJ unset)", function()
    local f = dbg.fast_paths()
    if f.layout and os.getenv("PARX_NO_LJ") == nil then assert.is_true(f.shapes) end
    if os.getenv("PARX_NO_LJ") == "1" then assert.is_false(f.shapes) end
  end)

  it("a list of records keeps every field of every record", function()
    local list = records(500)
    local back = dbg.unmarshal(dbg.marshal(list))
    assert.same(list, back)
    for i = 1, 500 do
      local r = back[i]
      assert.equal(4, count(r))
      assert.equal(i, r.id)
      assert.equal("n" .. i, r.name)
      assert.equal(i * 1.5, r.score)
      assert.equal(i % 2 == 0, r.ok)
    end
  end)

  it("records from one template are tables of their own", function()
    local back = dbg.unmarshal(dbg.marshal(records(100)))
    back[1].id = "changed"
    back[1].new = true
    assert.equal(2, back[2].id)
    assert.is_nil(back[2].new)
    assert.not_equal(back[1], back[2])
  end)

  it("a record made from a template grows, shrinks and iterates like any table", function()
    local back = dbg.unmarshal(dbg.marshal(records(200)))
    for i = 1, 200, 7 do
      local r = back[i]
      for k = 1, 40 do r["extra" .. k] = k end -- past its nodes: a rehash
      r.name = nil
      r[1] = "array"
      assert.equal(i, r.id)
      assert.is_nil(r.name)
      assert.equal(i * 1.5, r.score)
      assert.equal(40, r.extra40)
      assert.equal("array", r[1])
      assert.equal(4 - 1 + 40 + 1, count(r))
      collectgarbage()
    end
    -- and the others are untouched
    assert.same(records(200)[3], back[3])
  end)

  it("NaN, infinities, -0.0 and large numbers keep their values in a record", function()
    local list = {}
    for i = 1, 50 do list[i] = {a = 0 / 0, b = -1 / 0, c = -0.0, d = 2 ^ 53 + i, e = -i} end
    local back = dbg.unmarshal(dbg.marshal(list))
    for i = 1, 50 do
      local r = back[i]
      assert.is_true(r.a ~= r.a)
      assert.equal(-1 / 0, r.b)
      assert.equal(-1 / 0, 1 / r.c)
      assert.equal(2 ^ 53 + i, r.d)
      assert.equal(-i, r.e)
    end
  end)

  it("records of many shapes in one message keep their own keys", function()
    local list = {}
    for i = 1, 400 do
      local r = {}
      for k = 1, 1 + i % 9 do r["f" .. ((i + k) % 11)] = k * i end
      if i % 5 == 0 then r.s = "str" .. i end
      list[i] = r
    end
    -- the same keys, inserted in another order
    for i = 401, 440 do list[i] = i % 2 == 0 and {b = i, a = -i} or {a = -i, b = i} end
    -- more keys than a shape holds, and keys that are not short strings
    for i = 441, 460 do
      local r = {}
      for k = 1, 20 do r["k" .. k] = k end
      list[i] = r
    end
    for i = 461, 470 do list[i] = {[1.5] = i, x = i} end
    assert.same(list, dbg.unmarshal(dbg.marshal(list)))
  end)

  it("a record shared twice and a record in a cycle arrive as in the sender", function()
    local list = records(100, true)
    list[50] = list[10]
    local owner = {name = "o"}
    owner.self = owner
    list[101] = owner
    local back = dbg.unmarshal(dbg.marshal(list, list[10]))
    assert.equal(back[10], back[50])
    assert.equal(back[101], back[101].self)
    local b2, r10 = dbg.unmarshal(dbg.marshal(list, list[10]))
    assert.equal(b2[10], r10)
    assert.same(list[10], r10)
  end)

  it("records nested in records, and records as keys, keep their places", function()
    local list = {}
    for i = 1, 100 do
      list[i] = {id = i, pos = {x = i, y = -i}, name = "p" .. i}
    end
    local keyed = {}
    for i = 1, 50 do keyed[{k = i}] = i end
    local back, bkeyed = dbg.unmarshal(dbg.marshal(list, keyed))
    assert.same(list, back)
    local n = 0
    for k, v in pairs(bkeyed) do
      assert.equal(k.k, v)
      n = n + 1
    end
    assert.equal(50, n)
  end)

  it("records cross to a fresh VM and back", function()
    local list = records(300, true)
    assert.same(list, dbg.roundtrip_fresh(list))
  end)

  it("records survive a full collection while a message is read", function()
    -- Many messages in a row with the collector made eager: the template
    -- and the values must stay anchored while the records are made.
    collectgarbage("setpause", 50)
    collectgarbage("setstepmul", 1000)
    local ok, err = pcall(function()
      for round = 1, 30 do
        local list = records(300, round % 2 == 0)
        local back = dbg.unmarshal(dbg.marshal(list))
        assert.same(list, back)
      end
    end)
    collectgarbage("setpause", 200)
    collectgarbage("setstepmul", 200)
    assert(ok, err)
  end)

  it("a records message cut or corrupted anywhere fails cleanly", function()
    local s = dbg.marshal(records(40, true))
    for cut = 1, #s - 1, 3 do
      assert.is_false((pcall(dbg.unmarshal, s:sub(1, cut))), "cut at " .. cut)
    end
    math.randomseed(13)
    for _ = 1, 3000 do
      local i = math.random(5, #s)
      local c = s:sub(1, i - 1) .. string.char(math.random(0, 255)) .. s:sub(i + 1)
      local ok, v = pcall(dbg.unmarshal, c)
      if ok and type(v) == "table" then
        for _, r in pairs(v) do
          if type(r) == "table" then count(r) end
        end
      end
    end
    collectgarbage()
  end)

  it("a forged NaN with a tag's bits in a record arrives as a plain NaN", function()
    local s = dbg.marshal(records(30))
    -- the score of a record is a double (tag 0x05 then 8 bytes): replace
    -- each such double with bits that LuaJIT would read as a tagged value
    local forged = s:gsub("\5(........)", "\5\0\0\0\0\0\0\250\255")
    assert.not_equal(s, forged)
    local back = dbg.unmarshal(forged)
    local nans = 0
    for _, r in ipairs(back) do
      for _, v in pairs(r) do
        if type(v) == "number" and v ~= v then nans = nans + 1 end
        assert.is_true(type(v) == "number" or type(v) == "string" or type(v) == "boolean")
      end
    end
    assert.is_true(nans > 0)
  end)
end)
