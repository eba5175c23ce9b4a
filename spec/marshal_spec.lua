-- The marshaller (runtime/core/marshal.c): what crosses between VMs and what
-- does not.  Runs without the scheduler through parx.c.debug:
--   roundtrip(...)        there and back within this VM
--   roundtrip_fresh(...)  through a separate, fresh lua_State
--   call_fresh(fn, ...)   call fn in a fresh lua_State, results come back
local dbg = require "parx.c.debug"
local PARX = os.getenv("PARX_BIN") or "build/parx"

-- Run a script in its own parx process (what used to crash a process must
-- fail one spec, not the file).  Returns its output and exit status.
local function run_script(code, args)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local p = io.popen(("timeout -k 5 60 %s %s %s 2>&1; echo \"exit=$?\""):format(PARX, args or "", path))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

-- A message of one value: the segment header, then the value's bytes.
local function message(value_bytes) return "\183\1\0\1" .. value_bytes end

local function bits_equal(a, b)
  if a ~= a then return b ~= b end
  return a == b and 1 / a == 1 / b
end

-- Module-level helpers: globals that sent functions read.
function marshal_spec_helper(x) return x * 3 end
marshal_spec_config = {offset = 7, names = {"a", "b"}}

describe("marshal", function()
  for _, mode in ipairs{"roundtrip", "roundtrip_fresh"} do
    local rt = dbg[mode]

    describe(mode, function()
      it("keeps nil, booleans and the count of values", function()
        local n = select("#", rt(nil, true, false, nil))
        assert.equal(4, n)
        local a, b, c, d = rt(nil, true, false, nil)
        assert.is_nil(a); assert.is_true(b); assert.is_false(c); assert.is_nil(d)
        assert.equal(0, select("#", rt()))
      end)

      it("keeps numbers bit for bit", function()
        local xs = {0, -0.0, 1, -1, 127, 128, 255, 256, 32767, -32768, 32768,
          2^31 - 1, -2^31, 2^31, 2^32, 2^53, 2^53 + 2, -2^53, 2^63, 0.1, 1 / 3,
          1e308, -1e308, 5e-324, 2.2250738585072014e-308, math.huge,
          -math.huge, 0 / 0, math.pi}
        local back = {rt(unpack(xs))}
        for i, x in ipairs(xs) do
          assert.is_true(bits_equal(x, back[i]), "number #" .. i .. " " .. tostring(x))
        end
        assert.equal(math.huge, (rt(math.huge)))
        assert.equal(-math.huge, 1 / rt(-0.0))
        local nan = rt(0 / 0)
        assert.is_true(nan ~= nan)
      end)

      it("keeps the same numbers inside tables (array runs and hash values)", function()
        local t = {}
        for i = 1, 1000 do t[i] = (i % 7 == 0) and -0.0 or i * 0.5 end
        t[500] = 2^53; t[501] = 0 / 0; t[502] = math.huge
        t.k = -0.0
        local r = rt(t)
        for i = 1, 1000 do assert.is_true(bits_equal(t[i], r[i]), "index " .. i) end
        assert.is_true(bits_equal(-0.0, r.k))
      end)

      it("keeps strings binary-safe", function()
        local bin = {}
        for i = 0, 255 do bin[#bin + 1] = string.char(i) end
        bin = table.concat(bin)
        local s = bin:rep(40) -- long string, varint length
        local a, b, c, d = rt("", "\0", bin, s)
        assert.equal("", a); assert.equal("\0", b); assert.equal(bin, c); assert.equal(s, d)
        local t = rt({[bin] = bin, ["a\0b"] = "c\0d"})
        assert.equal(bin, t[bin]); assert.equal("c\0d", t["a\0b"])
      end)

      it("copies nested tables with mixed keys", function()
        local t = {1, 2, "three", {4, {5}}, x = {y = {z = "deep"}}, [true] = "yes",
          [0] = "zero", [-1] = "neg", [1.5] = "half", [100] = "far"}
        local r = rt(t)
        assert.are_not.equal(t, r)
        assert.same(t, r)
        assert.equal("deep", r.x.y.z)
        assert.equal("yes", r[true])
        assert.equal("zero", r[0])
        assert.equal("half", r[1.5])
      end)

      it("keeps holes in arrays", function()
        local t = {1, nil, 3, nil, 5}
        local r = rt(t)
        assert.equal(1, r[1]); assert.is_nil(r[2]); assert.equal(3, r[3])
        assert.is_nil(r[4]); assert.equal(5, r[5])
      end)

      it("keeps tables as keys", function()
        local k = {name = "key"}
        local t = {[k] = "value", k = k}
        local r = rt(t)
        assert.equal("value", r[r.k])
      end)

      it("keeps shared sub-tables shared", function()
        local shared = {v = 1}
        local t = {a = shared, b = shared, list = {shared, shared}}
        local r = rt(t)
        assert.equal(r.a, r.b)
        assert.equal(r.a, r.list[1])
        assert.equal(r.a, r.list[2])
        r.a.v = 2
        assert.equal(2, r.b.v)
        -- across arguments of one message too
        local x, y = rt(shared, shared)
        assert.equal(x, y)
      end)

      it("keeps cycles", function()
        local t = {name = "root"}
        t.self = t
        t.child = {parent = t}
        t.child.child = t.child
        local r = rt(t)
        assert.equal(r, r.self)
        assert.equal(r, r.child.parent)
        assert.equal(r.child, r.child.child)
        assert.equal("root", r.name)
      end)

      it("sends Lua functions with their upvalues by value", function()
        local base, tbl = 10, {k = 5}
        local function f(x) return x + base + tbl.k end
        local g = rt(f)
        assert.are_not.equal(f, g)
        assert.equal(16, g(1))
        base = 100
        assert.equal(16, g(1)) -- a copy, not the same upvalue
      end)

      it("makes a new closure with new upvalues for every receipt", function()
        local n = 0
        local function counter() n = n + 1; return n end
        local c1, c2 = rt(counter), rt(counter)
        assert.are_not.equal(c1, c2)
        c1(); c1()
        assert.equal(3, c1())
        assert.equal(1, c2())
        for _ = 1, 5 do assert.equal(1, rt(counter)()) end
        assert.equal(0, n)
      end)

      it("sends functions whose upvalues are functions and tables of functions", function()
        local function sq(x) return x * x end
        local ops = {inc = function(x) return x + 1 end, sq = sq}
        local function compose(x) return ops.inc(sq(x)) end
        local c = rt(compose)
        assert.equal(10, c(3))
        local r = rt(ops)
        assert.equal(16, r.sq(4))
        assert.equal(5, r.inc(4))
      end)

      it("sends recursive local functions", function()
        local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
        local f = rt(fact)
        assert.equal(3628800, f(10))
        local even, odd
        function even(n) if n == 0 then return true end return odd(n - 1) end
        function odd(n) if n == 0 then return false end return even(n - 1) end
        local e = rt(even)
        assert.is_true(e(10)); assert.is_false(e(7))
      end)

      it("keeps an upvalue shared between two sent closures", function()
        local n = 0
        local function inc() n = n + 1; return n end
        local function get() return n end
        local i2, g2 = rt(inc, get)
        i2(); i2()
        assert.equal(2, g2())
        assert.equal(0, n)
      end)

      it("sends closures of one prototype with their own upvalues", function()
        local function mk(i) return function() return i end end
        local fs = {}
        for i = 1, 5 do fs[i] = mk(i) end
        local r = rt(fs)
        for i = 1, 5 do assert.equal(i, r[i]()) end
        assert.are_not.equal(r[1], r[2])
      end)

      it("sends the same function twice as one function", function()
        local function f() return 1 end
        local a, b = rt(f, {f, f})
        assert.equal(a, b[1]); assert.equal(a, b[2])
      end)

      it("sends standard C functions by name", function()
        local sqrt, fmt, pr, tins = rt(math.sqrt, string.format, print, table.insert)
        assert.equal(4, sqrt(16))
        assert.equal("07", fmt("%02d", 7))
        assert.equal("function", type(pr))
        local t = {}; tins(t, 1); assert.same({1}, t)
        local lib = rt({f = math.floor, cs = {coroutine.wrap}})
        assert.equal(2, lib.f(2.5))
      end)

      it("sends modules by name", function()
        local s, m, t = rt(string, math, table)
        assert.equal(string, s); assert.equal(math, m); assert.equal(table, t)
        local function f(x) return string.rep(x, 2) .. math.floor(1.5) end
        assert.equal("aa1", rt(f)("a"))
      end)
    end)
  end

  describe("roundtrip in the same VM", function()
    it("sends a loaded module by name, keeping its identity", function()
      package.loaded["marshal_spec_mod"] = {value = 42}
      local mod = require "marshal_spec_mod"
      local back = dbg.roundtrip({m = mod})
      assert.equal(mod, back.m)
      package.loaded["marshal_spec_mod"] = nil
      -- no longer a module: copied
      local copy = dbg.roundtrip(mod)
      assert.are_not.equal(mod, copy)
      assert.equal(42, copy.value)
    end)

    it("keeps a metatable that is a module and refuses any other", function()
      local class = {}
      class.__index = class
      function class.get(self) return self.v end
      package.loaded["marshal_spec_class"] = class
      local obj = setmetatable({v = 3}, class)
      local r = dbg.roundtrip(obj)
      assert.equal(class, getmetatable(r))
      assert.equal(3, r:get())
      package.loaded["marshal_spec_class"] = nil
      -- (marshal_names.c; spec/modules_spec.lua: paths and parx.register_type)
      local ok, err = pcall(dbg.roundtrip, setmetatable({v = 1}, {__index = function() return 0 end}))
      assert.is_false(ok)
      assert.truthy(tostring(err):find("whose metatable is not a loaded module's", 1, true), err)
    end)

    it("sends the parx table by name", function()
      if not rawget(_G, "parx") then return end
      assert.equal(parx, (dbg.roundtrip(parx)))
    end)
  end)

  describe("in another VM", function()
    it("runs a sent function with its upvalues", function()
      local k = 5
      local ok, v = dbg.call_fresh(function(x) return x * k end, 3)
      assert.is_true(ok); assert.equal(15, v)
    end)

    it("takes along the non-standard globals a function reads", function()
      local ok, a, b, c = dbg.call_fresh(function(x)
        return marshal_spec_helper(x) + marshal_spec_config.offset,
          marshal_spec_config.names[2], type(marshal_spec_helper)
      end, 2)
      assert.is_true(ok, a)
      assert.equal(13, a); assert.equal("b", b); assert.equal("function", c)
    end)

    it("finds globals read by nested functions", function()
      local ok, v = dbg.call_fresh(function()
        local function inner() return marshal_spec_helper(1) end
        return inner()
      end)
      assert.is_true(ok, v); assert.equal(3, v)
    end)

    it("does not copy standard globals", function()
      local ok, same = dbg.call_fresh(function()
        return type(print) == "function" and math.sqrt(4) == 2 and string.rep("a", 2) == "aa"
      end)
      assert.is_true(ok, same); assert.is_true(same)
    end)

    it("uses standard C functions of the receiving VM", function()
      local ok, v = dbg.call_fresh(math.sqrt, 81)
      assert.is_true(ok); assert.equal(9, v)
      local ok2, s = dbg.call_fresh(string.format, "%d-%s", 4, "x")
      assert.is_true(ok2); assert.equal("4-x", s)
    end)

    it("re-requires a module by name on the other side", function()
      local dir = os.tmpname()
      os.remove(dir)
      local path = dir .. "_marshal_spec_fmod.lua"
      local fh = assert(io.open(path, "w"))
      fh:write("local M = {loads = (marshal_spec_loads or 0) + 1}\n",
        "function M.twice(x) return 2 * x end\n",
        "M.id = tostring(M)\n", "return M\n")
      fh:close()
      local name = path:match("([^/]+)%.lua$"):gsub("%.lua$", "")
      local dirpart = path:match("^(.*)/[^/]+$")
      local saved = package.path
      package.path = dirpart .. "/?.lua;" .. package.path
      local mod = require(name)
      local ok, v, id = dbg.call_fresh(function(x) return mod.twice(x), mod.id end, 21)
      package.path = saved
      package.loaded[name] = nil
      os.remove(path)
      assert.is_true(ok, v)
      assert.equal(42, v)
      assert.are_not.equal(mod.id, id) -- loaded afresh there, not copied
    end)

    it("reports a module the other side cannot load", function()
      package.loaded["marshal_spec_nowhere"] = {}
      local m = package.loaded["marshal_spec_nowhere"]
      local ok, err = pcall(dbg.call_fresh, function() return m end)
      package.loaded["marshal_spec_nowhere"] = nil
      assert.is_false(ok)
      assert.matches("marshal_spec_nowhere", err)
    end)

    it("returns errors raised there", function()
      local ok, err = dbg.call_fresh(function() error("boom") end)
      assert.is_false(ok); assert.matches("boom", err)
    end)
  end)

  describe("shared objects", function()
    local has_parx = rawget(_G, "parx") ~= nil
    local function need_parx()
      if not has_parx then
        pending("needs the parx runtime (run under build/parx)")
        return false
      end
      return true
    end

    it("cross by reference: a channel", function()
      if not need_parx() then return end
      local ch = parx.channel()
      local copy, again = dbg.roundtrip_fresh(ch, ch)
      assert.equal(copy, again) -- one object, one proxy
      ch:send("hello")
      assert.equal("hello", copy:recv())
    end)

    it("cross by reference: an array (cdata through the hook)", function()
      if not need_parx() then return end
      local a = parx.array("float64", {4})
      a:set(1, 5)
      local b = dbg.roundtrip_fresh(a)
      assert.equal(5, b:get(1))
      b:set(2, 7)
      assert.equal(7, a:get(2))
      local t = dbg.roundtrip({x = a, y = a})
      assert.equal(t.x, t.y)
    end)

    it("are released when a send fails half-way", function()
      if not need_parx() then return end
      local live = require("parx.c.array").live
      collectgarbage(); collectgarbage()
      local before = live()
      do
        local a = parx.array("int32", {8})
        local ok = pcall(dbg.roundtrip, {a, a, coroutine.create(print)})
        assert.is_false(ok)
        a = nil
      end
      collectgarbage(); collectgarbage()
      assert.equal(before, live())
    end)
  end)

  describe("64-bit integers and NULL", function()
    local ffi = require "ffi"
    local null = dbg.lightuserdata(0)
    local values = {0LL, 1LL, -1LL, 2^62 * 1LL + 1, -9223372036854775807LL - 1,
                    9223372036854775807LL, 0ULL, 1ULL, 0xffffffffffffffffULL,
                    ffi.new("int64_t", 42), ffi.new("uint64_t", 7)}

    local function same_int64(a, b)
      assert.equal("cdata", type(b))
      assert.is_true(ffi.istype(ffi.typeof(a), b), "same type")
      assert.is_true(a == b, tostring(a) .. " ~= " .. tostring(b))
    end

    it("int64 and uint64 cdata roundtrip exactly, with their type", function()
      for _, v in ipairs(values) do same_int64(v, (dbg.roundtrip(v))) end
      local t = dbg.roundtrip({a = -3LL, [1] = 5ULL, list = {1LL, 2, 3ULL}})
      same_int64(-3LL, t.a); same_int64(5ULL, t[1]); same_int64(3ULL, t.list[3])
      assert.equal(2, t.list[2])
    end)

    it("the NULL light userdata (cjson.null) roundtrips as itself", function()
      assert.equal(null, (dbg.roundtrip(null)))
      local t = dbg.roundtrip({x = null, null})
      assert.equal(null, t.x); assert.equal(null, t[1])
    end)

    it("int64 cdata cross to a fresh VM and back exactly", function()
      local ok, a, b, c = dbg.call_fresh(function(x, y, n)
        return x + 1, y * 2ULL, n
      end, 2^62 * 1LL, 0x7fffffffffffffffULL, null)
      assert.is_true(ok, a)
      same_int64(2^62 * 1LL + 1, a); same_int64(0xfffffffffffffffeULL, b)
      assert.equal(null, c)
    end)

    it("int64 cdata and NULL cross as task arguments and results", function()
      local a, b, c = parx.spawn(function(x, y, n) return x * 3LL, y, n end,
                                 -7LL, 0xffffffffffffffffULL, null):join()
      same_int64(-21LL, a); same_int64(0xffffffffffffffffULL, b)
      assert.equal(null, c)
    end)

    it("int64 cdata and NULL cross through a channel", function()
      local ch = parx.channel(4)
      ch:send(9223372036854775807LL); ch:send(0ULL); ch:send(null)
      same_int64(9223372036854775807LL, ch:recv())
      same_int64(0ULL, ch:recv())
      assert.equal(null, ch:recv())
      local t = parx.spawn(function(c) c:send(-1LL) end, ch)
      t:join()
      same_int64(-1LL, ch:recv())
    end)

    it("the sum of squares to 1e6 comes back exact through pool.reduce", function()
      local xs = {}
      for i = 1, 1000 do xs[i] = i end
      local squares = parx.pool.map(function(x) return x * x * 1LL end, xs)
      same_int64(1000000LL, squares[1000])
      local sum = parx.pool.reduce(function(a, b) return a + b end, squares)
      same_int64(333833500LL, sum)
    end)
  end)

  describe("unsendable values", function()
    local function fails(pattern, ...)
      local ok, err = pcall(dbg.roundtrip, ...)
      assert.is_false(ok)
      assert.matches(pattern, err, 1, true)
    end

    it("name the argument", function()
      fails("cannot send argument #1 (a coroutine) to another VM", coroutine.create(print))
      fails("cannot send argument #3 (a userdata)", 1, 2, io.stdout)
    end)

    it("name the field", function()
      fails("cannot send field 'x.y' of argument #2 (a userdata)", 1, {x = {y = io.stdout}})
      fails("field 'list[2]' of argument #1", {list = {1, coroutine.create(print)}})
      fails("field '[\"a b\"]' of argument #1", {["a b"] = coroutine.create(print)})
    end)

    it("name the upvalue", function()
      local co = coroutine.create(print)
      fails("cannot send upvalue 'co' of argument #1 (a coroutine)", function() return co end)
      local t = {h = io.stderr}
      fails("field 'h' of upvalue 't' of argument #1", function() return t end)
    end)

    it("name the global", function()
      marshal_spec_bad_global = coroutine.create(print)
      fails("global 'marshal_spec_bad_global' of argument #1",
        function() return marshal_spec_bad_global end)
      marshal_spec_bad_global = nil
    end)

    it("name a table key", function()
      fails("a key of argument #1", {[coroutine.create(print)] = 1})
    end)

    it("reject C functions that are not in a loaded module", function()
      local iter = string.gmatch("a", "a") -- a C closure
      fails("(a C function)", iter)
    end)

    it("reject light userdata other than NULL and foreign cdata", function()
      local ffi = require "ffi"
      fails("(a cdata)", ffi.new("int[1]"))
      fails("(a cdata)", ffi.new("int32_t", 1))
      fails("cannot send argument #1 (a light userdata)", dbg.lightuserdata(8))
    end)

    it("leave the sender usable", function()
      pcall(dbg.roundtrip, {1, 2, coroutine.create(print)})
      assert.same({1, 2}, dbg.roundtrip({1, 2}))
    end)

    it("stop at very deep nesting instead of overflowing", function()
      local t = {}
      local cur = t
      for _ = 1, 10000 do cur.next = {}; cur = cur.next end
      local ok, err = pcall(dbg.roundtrip, t)
      assert.is_false(ok)
      assert.matches("nested too deeply", err, 1, true)
    end)
  end)

  describe("messages", function()
    it("are versioned bytes that unmarshal back", function()
      local s = dbg.marshal(1, "two", {3})
      assert.equal(0xB7, s:byte(1))
      assert.equal(1, s:byte(2))
      local a, b, c = dbg.unmarshal(s)
      assert.equal(1, a); assert.equal("two", b); assert.same({3}, c)
    end)

    it("encode small integers compactly and arrays of numbers as raw doubles", function()
      assert.is_true(#dbg.marshal(5) <= 5)
      local t = {}
      for i = 1, 1000 do t[i] = i + 0.5 end
      local n = #dbg.marshal(t)
      -- without the table layout (PARX_NO_LJ=1) each item is tagged
      local limit = dbg.fast_paths().layout and 8100 or 9100
      assert.is_true(n >= 8000 and n < limit, n)
    end)

    it("reject truncated or foreign bytes without crashing", function()
      local s = dbg.marshal({1, "two", {3, 4.5}, function() return 1 end})
      for cut = 1, #s - 1 do
        local ok = pcall(dbg.unmarshal, s:sub(1, cut))
        assert.is_false(ok, "cut at " .. cut)
      end
      assert.is_false((pcall(dbg.unmarshal, "garbage")))
      assert.is_false((pcall(dbg.unmarshal, "\183\99\0\1\0")))
    end)

    it("survive random corruption without crashing", function()
      local s = dbg.marshal({1, "two", {3, 4.5, x = {y = true}}, -0.0, 2^40})
      math.randomseed(7)
      for _ = 1, 2000 do
        local i = math.random(4, #s)
        local c = s:sub(1, i - 1) .. string.char(math.random(0, 255)) .. s:sub(i + 1)
        pcall(dbg.unmarshal, c)
      end
    end)
  end)
  describe("from untrusted bytes (data-only mode)", function()
    it("100 KB of nested module names is rejected without overflowing the C stack", function()
      local out, status = run_script([[
        local dbg = require "parx.c.debug"
        for _, tag in ipairs{"\14", "\13", "\8"} do
          local ok, err = pcall(dbg.unmarshal, "\183\1\0\1" .. tag:rep(100000))
          print(ok, err)
        end
      ]])
      assert.equal(0, status, out)
      local _, n = out:gsub("false\tcannot receive a value", "")
      assert.equal(3, n, out)
    end)

    it("a 34-byte forged function message is rejected in data-only mode", function()
      local out, status = run_script([[
        local dbg = require "parx.c.debug"
        local bc = string.dump(loadstring("return x"), true)
        -- GGET with a constant index far out of range
        local forged = bc:sub(1, 14) .. "\54\0\255\255" .. bc:sub(19)
        local msg = "\183\1\0\1\11\0" .. string.char(#forged) .. forged .. "\0\0\0"
        local ok, err = pcall(dbg.unmarshal, msg)
        print(#msg, ok, err)
      ]])
      assert.equal(0, status, out)
      assert.matches("34\tfalse\t[^\n]*a function in a data%-only message", out)
    end)

    it("functions, C functions, modules and metatables by name raise a clear error", function()
      local cases = {
        {function() return 1 end, "a function"},
        {math.sqrt, "a C function"},
        {string, "a module reference"},
        {setmetatable({}, string), "a metatable by module name"},
        {{1, {2, {f = print}}}, "a C function"},
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(dbg.unmarshal, dbg.marshal(c[1]))
        assert.is_false(ok)
        assert.matches(c[2] .. " in a data-only message", err, 1, true)
      end
      -- plain data still comes back
      local t = dbg.unmarshal(dbg.marshal({1, "x", {y = true}, 2.5}))
      assert.same({1, "x", {y = true}, 2.5}, t)
    end)

    it("a module name in a data-only message never reaches require", function()
      local loaded = false
      package.preload.marshal_spec_evil = function() loaded = true; return {} end
      local name = "marshal_spec_evil"
      local ok, err = pcall(dbg.unmarshal, message("\14" .. string.char(0x40 + #name) .. name))
      package.preload.marshal_spec_evil = nil
      assert.is_false(ok)
      assert.matches("data-only", err, 1, true)
      assert.is_false(loaded)
    end)

    it("a 1 MB message cannot allocate more than a small multiple of its size", function()
      -- Each nested table claims 900,000 array slots (the bytes that remain
      -- allowed that), 200 deep: 1.4 GB if sizes were trusted.
      local level = "\7" .. "\160\247\54" .. "\0\0\0\0" -- narr = 900000
      assert.equal(900000, 0x20 + 0x77 * 128 + 54 * 16384)
      local body = level:rep(210)
      local msg = message(body .. ("\0"):rep(2^20 - #body - 4))
      assert.equal(2^20, #msg)
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      local ok = pcall(dbg.unmarshal, msg)
      local grown = (collectgarbage("count") - before) * 1024
      collectgarbage("restart")
      collectgarbage()
      assert.is_false(ok)
      assert.is_true(grown < 40 * #msg, ("grew by %.0f MB"):format(grown / 2^20))
    end)

    it("big plain data still comes back", function()
      local t = {}
      for i = 1, 100000 do t[i] = i * 0.5 end
      local r = dbg.unmarshal(dbg.marshal(t, {nested = t}))
      assert.equal(100000, #r)
      assert.equal(50000, r[100000])
    end)
  end)
  describe("shared objects", function()
    it("a forged __px_shared proxy cannot be sent", function()
      local out, status = run_script([[
        local dbg = require "parx.c.debug"
        local p = newproxy(true)
        getmetatable(p).__px_shared = true
        print(pcall(dbg.roundtrip, p))
        local mt = getmetatable(io.stdout)
        mt.__px_shared = true
        print(pcall(dbg.roundtrip, io.stdout))
        local ok, err = pcall(function() return parx.spawn(function(x) return x end, p):join() end)
        print(ok, err)
      ]])
      assert.equal(0, status, out)
      local _, n = out:gsub("false\tcannot send argument #%d %(a userdata%)", "")
      assert.equal(3, n, out)
    end)

    it("a replaced cdata hook cannot make the marshaller read a forged pointer", function()
      local out, status = run_script([[
        local A = require "parx.c.array"
        local marker = require("parx.c.task").PARK -- a light userdata to a static
        A.init(function(x) return x end, function() return marker end)
        print(pcall(parx.spawn, function(x) return x end, require("ffi").new("int[1]")))
      ]])
      assert.equal(0, status, out)
      assert.matches("false\tcannot send argument #2 %(a cdata%)", out)
    end)

    it("parx metatables cannot be read or replaced by scripts", function()
      local ch, m = parx.channel(), parx.mutex()
      assert.equal("parx.channel", getmetatable(ch))
      assert.equal("parx.mutex", getmetatable(m))
      assert.equal("parx.task", getmetatable(parx.spawn(function() end)))
      assert.is_false((pcall(setmetatable, ch, {})))
      -- and they still work, and still cross
      ch:send(1)
      assert.equal(1, ch:recv())
      local back = dbg.roundtrip(ch)
      back:send(2)
      assert.equal(2, ch:recv())
    end)
  end)

  describe("globals sent with a function", function()
    it("globals sent with task A are not seen by task B on the same worker", function()
      local out, status = run_script([[
        local ch = parx.channel()
        CONFIG = "A"
        local a = parx.spawn(function() ch:recv(); return CONFIG end)
        CONFIG = "B"
        local b = parx.spawn(function() return CONFIG end)
        print("b", b:join())
        ch:send(true)
        print("a", a:join())
      ]], "--workers 1")
      assert.equal(0, status, out)
      assert.matches("b\tB\n", out)
      assert.matches("a\tA\n", out)
    end)

    it("a global a task assigns does not leak into the next task on the worker", function()
      local out, status = run_script([[
        parx.spawn(function() LEAKED = "yes" end):join()
        print("next", parx.spawn(function() return LEAKED end):join())
        print("main", LEAKED)
      ]], "--workers 1")
      assert.equal(0, status, out)
      assert.matches("next\tnil\n", out)
      assert.matches("main\tnil\n", out)
    end)

    it("functions sent in one message share their globals", function()
      local function read() return marshal_spec_shared_g end
      local ok, a, b = dbg.call_fresh(function()
        local before = read()
        marshal_spec_shared_g = "set"
        return before, read()
      end)
      assert.is_true(ok, a)
      assert.is_nil(a)
      assert.equal("set", b)
    end)

    it("a received function still reads the worker's standard globals", function()
      local v = parx.spawn(function() return type(print) .. math.floor(2.5) end):join()
      assert.equal("function2", v)
    end)
  end)
end)

-- Flat tables (records and rows of scalars) are written straight from
-- LuaJIT's table layout (marshal.c encode_flat); the reader interns a
-- message's repeated keys once (unmarshal.c decode_key).  Both must write
-- and read exactly what the general paths do.
describe("flat tables", function()
  local MAKE = [[
    local v = {}
    for i = 1, 300 do
      v[i] = {id = i, name = "n" .. i, score = i * 1.5, ok = i % 2 == 0, [""] = "e"}
    end
    v[301] = {1, "two", 3.5, true, false}
    v[302] = {}
    v[303] = {x = 1, 10, 20}
    v[304] = {[0] = "zero", 1}
    v[305] = {1, nil, 3}
    v[306] = {[1.5] = "k", a = 1}
    v[307] = {a = {b = 1}}
    return v
  ]]

  it("a flat table is written as the plain writer writes it (PARX_NO_LJ=1)", function()
    local code = "local v = (function() " .. MAKE .. " end)() " ..
                 "io.write(require('parx.c.debug').marshal(v))"
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write(code); f:close()
    local pipe = io.popen(("PARX_NO_LJ=1 %s %s"):format(PARX, path))
    local plain = pipe:read("*a")
    pipe:close()
    os.remove(path)
    local v = assert(loadstring(MAKE))()
    local fast = dbg.marshal(v)
    -- The pairs of a table may come in another order in another process
    -- (where each key's node lies): the same size, the same value.
    assert.is_true(#plain > 1000)
    assert.equal(#plain, #fast)
    assert.same(v, dbg.unmarshal(plain))
    assert.same(v, dbg.unmarshal(fast))
  end)

  it("a list of records keeps every key and value, repeated keys included", function()
    local v = assert(loadstring(MAKE))()
    local back = dbg.unmarshal(dbg.marshal(v))
    assert.same(v, back)
    assert.equal("n300", back[300].name)
    assert.equal("e", back[7][""])
    assert.is_true(back[2].ok)
    -- grown by appends: empty slack after the items
    local strs, mixed = {}, {}
    for i = 1, 300 do strs[i] = "s" .. i; mixed[i] = i % 3 == 0 and true or ("m" .. i) end
    mixed.tag = "list"
    assert.same(strs, dbg.unmarshal(dbg.marshal(strs)))
    assert.same(mixed, dbg.unmarshal(dbg.marshal(mixed)))
    assert.equal(300, #dbg.unmarshal(dbg.marshal(strs)))
    local holes = {"a", "b", "c", "d", "e"}
    holes[3] = nil
    assert.same(holes, dbg.unmarshal(dbg.marshal(holes)))
  end)

  it("a record that appears twice arrives as one table", function()
    local r = {a = 1, b = "x"}
    local list = {}
    for i = 1, 100 do list[i] = i % 2 == 0 and r or {a = i} end
    local back = dbg.unmarshal(dbg.marshal(list, r))
    assert.equal(back[2], back[4])
    assert.not_equal(back[1], back[3])
  end)

  it("a record with a metatable that is not a module is refused, naming it", function()
    local list = {}
    for i = 1, 50 do list[i] = setmetatable({a = i}, {__index = function() return 0 end}) end
    local ok, err = pcall(dbg.marshal, list)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("field '[1]' of argument #1 (a table whose metatable", 1, true), err)
  end)

  it("a flat table that is a loaded module crosses as the module", function()
    package.loaded["marshal_spec_flat_mod"] = {answer = 42}
    local list = {}
    for i = 1, 20 do list[i] = package.loaded["marshal_spec_flat_mod"] end
    local back = dbg.roundtrip(list)
    assert.equal(package.loaded["marshal_spec_flat_mod"], back[1])
    package.loaded["marshal_spec_flat_mod"] = nil
  end)

  it("a run of numbers in a flat table still goes as raw doubles in bulk", function()
    local xs = require("table.new")(100, 0) -- an array part of exactly 100
    for i = 1, 100 do xs[i] = i end
    local bytes = #dbg.marshal(xs)
    if dbg.fast_paths().layout then
      assert.is_true(bytes >= 800, "bytes: " .. bytes) -- 8 bytes a number, copied as a block
    else
      assert.is_true(bytes < 800, "bytes: " .. bytes) -- tagged one by one
    end
    assert.same(xs, dbg.unmarshal(dbg.marshal(xs)))
    local row = {1, 2, 3, "x", name = "r"} -- short: written from its slots
    assert.same(row, dbg.unmarshal(dbg.marshal(row)))
  end)

  it("keys that collide in the reader's key cache stay distinct", function()
    local list = {}
    for i = 1, 200 do
      local r = {}
      r["k" .. (i % 97)] = i
      r["a" .. (i % 13) .. "b"] = -i
      list[i] = r
    end
    assert.same(list, dbg.unmarshal(dbg.marshal(list)))
  end)
end)
