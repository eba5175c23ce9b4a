-- parx.array: shared typed arrays.
local ffi = require "ffi"
local bit = require "bit"

local array = parx.array

local function collect()
  collectgarbage()
  collectgarbage()
end

-- Collect garbage in the main VM and in every worker VM (arrays that
-- crossed are referenced from each VM that saw them, until its GC runs).
-- Each round keeps every worker busy for a moment so that they all take a
-- job; a worker reports its id.
local function collect_everywhere()
  local ctask = require "parx.c.task"
  local n = ctask.workers()
  local seen, count = {}, 0
  for _ = 1, 100 do
    local tasks = {}
    for k = 1, n do
      tasks[k] = parx.spawn(function()
        collectgarbage()
        collectgarbage()
        local t0 = parx.now()
        while parx.now() - t0 < 0.002 do end
        return require("parx.c.task").vm_id()
      end)
    end
    for k = 1, n do
      local id = tasks[k]:join()
      if not seen[id] then seen[id], count = true, count + 1 end
    end
    if count >= n then break end
  end
  collect()
end

-- float16 / bfloat16 bit patterns as stored (a.data is uint16_t*).
local function bits(dtype, v)
  local a = array(dtype, 1)
  a:set(1, v)
  return a.data[0]
end

local function from_bits(dtype, b)
  local a = array(dtype, 1)
  a.data[0] = b
  return a:get(1)
end

describe("parx.array", function()
  describe("construction", function()
    it("makes a zero-filled array from a number or a table shape", function()
      local a = array("float64", 5)
      assert.are.same({5}, a:shape())
      assert.equal(5, #a)
      assert.equal(5, a:size())
      assert.equal(1, a:ndim())
      assert.equal("float64", a:dtype())
      for i = 1, 5 do assert.equal(0, a:get(i)) end

      local b = array("int16", {2, 3, 4})
      assert.are.same({2, 3, 4}, b:shape())
      assert.equal(24, #b)
      assert.equal(3, b:ndim())
      for i = 1, 24 do assert.equal(0, b:get(i)) end
    end)

    it("supports every dtype with the matching a.data pointer type", function()
      local ctypes = {
        int8 = "int8_t *", int16 = "int16_t *", int32 = "int32_t *",
        int64 = "int64_t *", uint8 = "uint8_t *", uint16 = "uint16_t *",
        uint32 = "uint32_t *", uint64 = "uint64_t *", float16 = "uint16_t *",
        bfloat16 = "uint16_t *", float32 = "float *", float64 = "double *",
      }
      assert.equal(12, #array.dtypes)
      for _, dt in ipairs(array.dtypes) do
        local a = array(dt, 3)
        assert.equal(dt, a:dtype())
        assert.is_true(ffi.istype(ctypes[dt], a.data), dt)
        assert.is_true(array.is(a))
      end
      assert.is_false(array.is(ffi.new("double[3]")))
      assert.is_false(array.is({}))
    end)

    it("allocates 64-byte aligned data", function()
      for _, n in ipairs({1, 3, 17, 1000}) do
        local a = array("int8", n)
        assert.equal(0, tonumber(ffi.cast("uintptr_t", a.data)) % 64)
      end
    end)

    it("allows empty dimensions", function()
      local a = array("float32", {3, 0})
      assert.equal(0, #a)
      assert.are.same({{}, {}, {}}, a:totable())
      assert.has_error(function() a:get(1) end)
    end)

    it("builds N-D arrays from nested tables", function()
      local a = array.from("int32", {{1, 2, 3}, {4, 5, 6}})
      assert.are.same({2, 3}, a:shape())
      assert.are.same({{1, 2, 3}, {4, 5, 6}}, a:totable())
      local b = array.from("float64", {1.5, 2.5})
      assert.are.same({2}, b:shape())
      assert.are.same({1.5, 2.5}, b:totable())
      local c = array.from("uint8", {{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}})
      assert.are.same({2, 2, 2}, c:shape())
      assert.equal(7, c:get(2, 2, 1))
      assert.equal(0, #array.from("int8", {}))
    end)
  end)

  describe("zero-filling", function()
    local zero_filled = require("parx.c.array").zero_filled

    it("parx.array() is zero-filled even over memory freed dirty", function()
      for _ = 1, 20 do
        local a = array("int64", 4096)
        a:fill(-1)
        a = nil
        collectgarbage()
        local b = array("int64", 4096)
        for i = 1, 4096, 97 do assert.equal(0, b:get(i)) end
        assert.equal(0, b:get(4096))
      end
    end)

    it("constructors that write every element skip the zero-filling", function()
      local src = array.from("float32", {{1, 2}, {3, 4}})
      local before = zero_filled()
      local made = {
        src:copy(),
        array.from("int8", {1, 2, 3}),
        parx.gpu.rand("float32", {8}, {seed = 1, host = true}),
        parx.gpu.upload(src):download(),
        parx.gpu.add(src, src),
      }
      assert.equal(before, zero_filled())
      for i = 1, 4 do assert.equal(i, made[1]:get(i)) end
      assert.are.same({1, 2, 3}, made[2]:totable())
      assert.equal(4, made[4]:get(2, 2))
      assert.equal(8, made[5]:get(2, 2))
      array("float32", 8)
      assert.equal(before + 1, zero_filled()) -- the counter does count
    end)
  end)

  describe("indexing", function()
    it("is row-major: N indices and the flat index agree", function()
      local a = array("int32", {3, 4})
      local k = 0
      for i = 1, 3 do
        for j = 1, 4 do
          k = k + 1
          a:set(i, j, k * 10)
        end
      end
      for f = 1, 12 do assert.equal(f * 10, a:get(f)) end
      assert.equal(70, a:get(2, 3))
      assert.equal(70, a.data[6]) -- 0-based
      a:set(7, -1)
      assert.equal(-1, a:get(2, 3))

      local b = array("float64", {2, 3, 4})
      b:set(2, 3, 4, 9.5)
      assert.equal(9.5, b:get(24))
      b:set(1, 2, 3, 1.25)
      assert.equal(1.25, b.data[(0 * 3 + 1) * 4 + 2])
    end)

    it("a.data writes are seen by get", function()
      local a = array("float64", 100)
      local d = a.data
      for k = 0, 99 do d[k] = k * 0.5 end
      for i = 1, 100 do assert.equal((i - 1) * 0.5, a:get(i)) end
    end)

    it("fill sets every element", function()
      for _, dt in ipairs(array.dtypes) do
        local a = array(dt, {3, 5})
        assert.equal(a, a:fill(7))
        for i = 1, 15 do assert.equal(7, a:get(i), dt) end
      end
      local h = array("float16", 4):fill(0.1)
      assert.equal(from_bits("float16", 0x2e66), h:get(4))
    end)

    it("copy makes an independent array", function()
      local a = array.from("int64", {{1, 2}, {3, 4}})
      local b = a:copy()
      b:set(1, 99)
      assert.equal(1, a:get(1))
      assert.are.same({{99, 2}, {3, 4}}, b:totable())
      assert.are.same({2, 2}, b:shape())
    end)

    it("prints dtype, shape and values", function()
      local a = array.from("int32", {{1, 2}, {3, 4}})
      assert.equal("parx.array(int32, 2x2) {{1, 2}, {3, 4}}", tostring(a))
      local big = array("float64", 1000)
      assert.truthy(tostring(big):find("{0, 0, 0, ..., 0, 0, 0}", 1, true))
      assert.truthy(tostring(array("float32", {2})):find("float32, 2"))
    end)
  end)

  describe("values", function()
    it("integer dtypes round-trip their whole range", function()
      local ranges = {
        int8 = {-128, 127}, int16 = {-32768, 32767},
        int32 = {-2147483648, 2147483647}, uint8 = {0, 255},
        uint16 = {0, 65535}, uint32 = {0, 4294967295},
        int64 = {-2 ^ 53, 2 ^ 53}, uint64 = {0, 2 ^ 53},
      }
      for dt, r in pairs(ranges) do
        local a = array(dt, 3)
        a:set(1, r[1]); a:set(2, r[2]); a:set(3, 1)
        assert.equal(r[1], a:get(1), dt)
        assert.equal(r[2], a:get(2), dt)
        assert.equal("number", type(a:get(2)), dt)
      end
    end)

    it("integer dtypes raise on overflow and fractions instead of wrapping", function()
      local over = {
        int8 = {-129, 128}, int16 = {-32769, 32768},
        int32 = {-2147483649, 2147483648}, uint8 = {-1, 256},
        uint16 = {-1, 65536}, uint32 = {-1, 4294967296},
        int64 = {-2 ^ 63 - 2 ^ 11, 2 ^ 63}, uint64 = {-1, 2 ^ 64},
      }
      for dt, r in pairs(over) do
        local a = array(dt, 1)
        assert.has_error(function() a:set(1, r[1]) end)
        assert.has_error(function() a:set(1, r[2]) end)
        assert.has_error(function() a:set(1, 0.5) end)
        assert.has_error(function() a:fill(r[2]) end)
        assert.has_error(function() array.from(dt, {1, r[1]}) end)
        local ok, err = pcall(a.set, a, 1, r[2])
        assert.is_false(ok)
        assert.truthy(err:find("out of range for " .. dt, 1, true), err)
        assert.equal(0, a:get(1))
      end
      local ok, err = pcall(array("int8", 1).set, array("int8", 1), 1, 1.5)
      assert.truthy(err:find("not an integer", 1, true), err)
    end)

    it("64-bit dtypes take exact 64-bit cdata", function()
      local a = array("int64", 2)
      a:set(1, -0x8000000000000000LL)
      a:set(2, 0x7fffffffffffffffLL)
      assert.equal(-0x8000000000000000LL, a.data[0])
      assert.equal(0x7fffffffffffffffLL, a.data[1])
      local u = array("uint64", 1)
      u:set(1, 0xffffffffffffffffULL)
      assert.equal(0xffffffffffffffffULL, u.data[0])
      assert.has_error(function() u:set(1, -1LL) end)
      u:set(1, 2 ^ 63 + 2048) -- a number above int64's range
      assert.equal(9223372036854777856ULL, u.data[0])
      assert.equal(2 ^ 63 + 2048, u:get(1))
      assert.has_error(function() a:set(1, 0x8000000000000000ULL) end)
    end)

    it("float32 rounds to nearest", function()
      local a = array("float32", 2)
      a:set(1, 0.1)
      assert.equal(tonumber(ffi.new("float", 0.1)), a:get(1))
      a:set(2, 1e300)
      assert.equal(math.huge, a:get(2))
    end)

    it("float16 rounds to nearest even", function()
      assert.equal(0x3c00, bits("float16", 1))
      assert.equal(0x3555, bits("float16", 1 / 3))
      assert.equal(0x3c00, bits("float16", 1 + 2 ^ -11))      -- tie: even
      assert.equal(0x3c02, bits("float16", 1 + 3 * 2 ^ -11))  -- tie: even, up
      assert.equal(0x3c01, bits("float16", 1 + 2 ^ -11 + 2 ^ -30)) -- above tie
      assert.equal(0x7bff, bits("float16", 65504))            -- largest
      assert.equal(0x7bff, bits("float16", 65519.99))
      assert.equal(0x7c00, bits("float16", 65520))            -- overflow
      assert.equal(0x7c00, bits("float16", 1e10))
      assert.equal(0xfc00, bits("float16", -1e10))
      assert.equal(0x0001, bits("float16", 2 ^ -24))          -- subnormal
      assert.equal(0x0000, bits("float16", 2 ^ -25))          -- tie to 0
      assert.equal(0x0001, bits("float16", 2 ^ -25 + 2 ^ -40))
      assert.equal(0x0002, bits("float16", 3 * 2 ^ -25))      -- tie: even
      assert.equal(0x03ff, bits("float16", 2 ^ -14 - 2 ^ -24)) -- largest subnormal
      assert.equal(0x0400, bits("float16", 2 ^ -14 - 2 ^ -26)) -- rounds to normal
      assert.equal(0x8000, bits("float16", -0.0))
      assert.equal(0x7c00, bits("float16", math.huge))
      assert.equal(0xfc00, bits("float16", -math.huge))
      local nan = bits("float16", 0 / 0)
      assert.equal(0x7c00, bit.band(nan, 0x7c00))
      assert.is_true(bit.band(nan, 0x3ff) ~= 0)
    end)

    it("float16 decodes every bit pattern", function()
      assert.equal(1, from_bits("float16", 0x3c00))
      assert.equal(-2, from_bits("float16", 0xc000))
      assert.equal(65504, from_bits("float16", 0x7bff))
      assert.equal(2 ^ -24, from_bits("float16", 0x0001))
      assert.equal(2 ^ -14, from_bits("float16", 0x0400))
      assert.equal(math.huge, from_bits("float16", 0x7c00))
      assert.equal(-math.huge, from_bits("float16", 0xfc00))
      local n = from_bits("float16", 0x7e00)
      assert.is_true(n ~= n)
      assert.equal(-math.huge, 1 / from_bits("float16", 0x8000))
      -- every finite pattern survives decode then encode
      local a = array("float16", 1)
      for b = 0, 0xffff do
        if bit.band(b, 0x7c00) ~= 0x7c00 then
          a.data[0] = b
          a:set(1, a:get(1))
          if a.data[0] ~= b then error(("float16 pattern %04x"):format(b)) end
        end
      end
    end)

    it("bfloat16 rounds to nearest even", function()
      assert.equal(0x3f80, bits("bfloat16", 1))
      assert.equal(0x3f80, bits("bfloat16", 1 + 2 ^ -8))      -- tie: even
      assert.equal(0x3f82, bits("bfloat16", 1 + 3 * 2 ^ -8))  -- tie: even, up
      assert.equal(0x3eab, bits("bfloat16", 1 / 3))
      assert.equal(0x7f7f, bits("bfloat16", 3.3895313892515355e38)) -- largest
      assert.equal(0x7f80, bits("bfloat16", 3.4e38))           -- overflow
      assert.equal(0x0001, bits("bfloat16", 2 ^ -133))         -- subnormal
      assert.equal(0x0000, bits("bfloat16", 2 ^ -134))         -- tie to 0
      assert.equal(0x8000, bits("bfloat16", -0.0))
      assert.equal(0xff80, bits("bfloat16", -math.huge))
      assert.equal(1, from_bits("bfloat16", 0x3f80))
      assert.equal(2 ^ -133, from_bits("bfloat16", 0x0001))
      assert.equal(math.huge, from_bits("bfloat16", 0x7f80))
      local n = from_bits("bfloat16", bits("bfloat16", 0 / 0))
      assert.is_true(n ~= n)
    end)
  end)

  describe("atomics", function()
    it("atomic_add returns the new value and wraps like C", function()
      local a = array("int32", {2, 2})
      assert.equal(5, a:atomic_add(1, 5))
      assert.equal(-3, a:atomic_add(2, 2, -3))
      assert.equal(-3, a:get(4))
      assert.equal(5, a:atomic_get(1))
      local i8 = array("int8", 1)
      assert.equal(127, i8:atomic_add(1, 127))
      assert.equal(-128, i8:atomic_add(1, 1))
      local u = array("uint64", 1)
      assert.equal(2 ^ 64 - 1, u:atomic_add(1, -1))
      assert.equal(0xffffffffffffffffULL, u.data[0])
      local u8 = array("uint8", 1)
      assert.equal(255, u8:atomic_add(1, -1))
    end)

    it("atomic_cas swaps only when the old value matches", function()
      local a = array("int64", 3)
      a:set(2, 7)
      assert.is_true(a:atomic_cas(2, 7, 9))
      assert.is_false(a:atomic_cas(2, 7, 10))
      assert.equal(9, a:get(2))
      local b = array("int16", {2, 2})
      assert.is_true(b:atomic_cas(2, 1, 0, -5))
      assert.equal(-5, b:get(2, 1))
    end)

    it("exists only for integer dtypes and checks its arguments", function()
      assert.has_error(function() return array("float64", 1).atomic_add end)
      local a = array("int32", 4)
      assert.has_error(function() a:atomic_add(5, 1) end)
      assert.has_error(function() a:atomic_add(1, 1.5) end)
      assert.has_error(function() a:atomic_add(1) end)
      assert.has_error(function() a:atomic_cas(1, 0, 2 ^ 40) end)
    end)

    it("counts exactly under contention from every worker", function()
      local bins = array("int64", 4)
      local tasks = {}
      for t = 1, 4 do
        tasks[t] = parx.spawn(function(h)
          for i = 1, 20000 do h:atomic_add(i % 4 + 1, 1) end
        end, bins)
      end
      for t = 1, 4 do tasks[t]:join() end
      assert.are.same({20000, 20000, 20000, 20000}, bins:totable())
    end)
  end)

  describe("errors", function()
    local function err_of(f, ...)
      local ok, e = pcall(f, ...)
      assert.is_false(ok)
      return e
    end

    it("rejects bad dtypes", function()
      assert.truthy(err_of(array, "float128", 3):find("unknown dtype 'float128'", 1, true))
      assert.truthy(err_of(array, nil, 3):find("dtype must be a string", 1, true))
      assert.truthy(err_of(array.from, "int", {1}):find("unknown dtype", 1, true))
    end)

    it("rejects bad shapes", function()
      assert.truthy(err_of(array, "int8", {}):find("no dimensions", 1, true))
      assert.truthy(err_of(array, "int8", -1):find("dimension 1 is -1", 1, true))
      assert.truthy(err_of(array, "int8", {2, 1.5}):find("dimension 2 is 1.5", 1, true))
      assert.truthy(err_of(array, "int8", {2, 0 / 0}):find("dimension 2", 1, true))
      assert.truthy(err_of(array, "int8", math.huge):find("dimension 1", 1, true))
      assert.truthy(err_of(array, "int8", {1, 1, 1, 1, 1, 1, 1, 1, 1}):find("at most 8", 1, true))
      assert.truthy(err_of(array, "int8", {2 ^ 40, 2 ^ 40}):find("too many elements", 1, true))
      assert.truthy(err_of(array, "int8", "3"):find("shape must be", 1, true))
      assert.truthy(err_of(array, "int8", {"3"}):find("dimension 1 must be a number", 1, true))
      assert.truthy(err_of(array, "float64", {2 ^ 26, 2 ^ 26}):find("cannot allocate", 1, true))
    end)

    it("rejects ragged or non-table input to from", function()
      assert.truthy(err_of(array.from, "int8", {{1, 2}, {3}}):find("ragged", 1, true))
      assert.truthy(err_of(array.from, "int8", {{1, 2}, 3}):find("ragged", 1, true))
      assert.truthy(err_of(array.from, "int8", {1, {2}}):find("ragged", 1, true))
      assert.truthy(err_of(array.from, "int8", 5):find("expects a table", 1, true))
      assert.truthy(err_of(array.from, "int8", {1, "x"}):find("must be a number", 1, true))
    end)

    it("rejects out-of-range and malformed indices", function()
      local a = array("float64", {2, 3})
      assert.truthy(err_of(a.get, a, 0):find("index 0 out of range (1..6)", 1, true))
      assert.truthy(err_of(a.get, a, 7):find("index 7 out of range (1..6)", 1, true))
      assert.truthy(err_of(a.get, a, 1.5):find("not an integer", 1, true))
      assert.truthy(err_of(a.get, a, 0 / 0):find("out of range", 1, true))
      assert.truthy(err_of(a.get, a, "1"):find("must be a number", 1, true))
      assert.truthy(err_of(a.get, a, 3, 1):find("index #1 is 3, out of range (1..2)", 1, true))
      assert.truthy(err_of(a.get, a, 1, 4):find("index #2 is 4", 1, true))
      assert.truthy(err_of(a.set, a, 7, 1):find("out of range", 1, true))
      assert.truthy(err_of(a.set, a, 1, 4, 1):find("index #2", 1, true))
      assert.truthy(err_of(a.get, a, 1, 2, 3):find("expected 1 or 2 indices", 1, true))
      assert.truthy(err_of(a.set, a, 1, 2, 3, 4):find("expected 1 or 2 indices", 1, true))
      assert.truthy(err_of(a.get, a, 1, nil):find("index #2 must be a number", 1, true))
    end)

    it("rejects values that are not numbers", function()
      for _, dt in ipairs(array.dtypes) do
        local a = array(dt, 2)
        assert.truthy(err_of(a.set, a, 1, "5"):find("value must be a number, got string", 1, true))
        assert.truthy(err_of(a.set, a, 1, nil):find("got nil", 1, true))
        assert.truthy(err_of(a.set, a, 1, true):find("got boolean", 1, true))
        assert.truthy(err_of(a.fill, a, {}):find("got table", 1, true))
      end
    end)

    it("names the caller's line", function()
      local a = array("int8", 2)
      local ok, e = pcall(function() a:get(3) end)
      assert.is_false(ok)
      assert.truthy(e:find("array_spec.lua:%d+: parx.array: index 3"), e)
    end)
  end)

  describe("lifetime", function()
    it("frees arrays when the last reference is collected", function()
      collect()
      local base = array.live()
      local keep = {}
      for i = 1, 50 do keep[i] = array("float64", {10, i}) end
      assert.equal(base + 50, array.live())
      keep = nil
      collect()
      assert.equal(base, array.live())
    end)

    it("a.data keeps its array alive after the array is collected", function()
      collect()
      local base = array.live()
      local d = array("float64", 1e6).data
      collect()
      assert.equal(base + 1, array.live())   -- still there: d holds it
      d[0], d[1e6 - 1] = 1.5, 2.5
      local junk = {}
      for i = 1, 1000 do junk[i] = array("float64", 1000) end  -- reuse freed memory, if any
      junk = nil
      assert.equal(1.5, d[0])
      assert.equal(2.5, d[1e6 - 1])
      d = nil
      collect()
      assert.equal(base, array.live())       -- and freed once d goes
    end)

    it("a.data is one pointer per array, and the array is freed with it", function()
      collect()
      local base = array.live()
      do
        local a = array("int32", 3)
        assert.is_true(rawequal(a.data, a.data))
        a.data[2] = 7
        assert.equal(7, a:get(3))
        assert.is_true(ffi.istype("int32_t *", a.data))
      end
      for _ = 1, 200 do local _ = array("uint8", 10).data[0] end
      collect()
      assert.equal(base, array.live())
    end)

    it("a loop over a.data[i] is compiled by the JIT (the anchor does not stop it)", function()
      if not (jit and jit.status()) then
        pending("the JIT is off")
        return
      end
      local function sum(a)
        local s = 0
        for i = 0, #a - 1 do s = s + a.data[i] end
        return s
      end
      local compiled = false
      local function on_trace(what, _, func)
        if what == "stop" and func == sum then compiled = true end
      end
      jit.attach(on_trace, "trace")
      local a = array("float64", 1000)
      a:fill(1)
      local ok, total = pcall(function()
        local t = 0
        for _ = 1, 200 do t = t + sum(a) end
        return t
      end)
      jit.attach(on_trace) -- detach
      assert.is_true(ok)
      assert.equal(200000, total)
      assert.is_true(compiled)
    end)

    it("an array's header cannot be written from Lua", function()
      local a = array("float64", 4)
      assert.has_error(function() a.hdr.refs = 1 end)
      assert.has_error(function() return a.hdr end)
      assert.has_error(function() a._hdr[8] = 1 end)
      assert.has_error(function() a.data = ffi.new("double[4]") end)
      assert.has_error(function() a._data = nil end)
      assert.has_error(function() a._n = 100 end)
      assert.has_error(function() a._shape[0] = 100 end)
      assert.has_error(function() a._dtype = 0 end)
      assert.equal(4, #a)
      a:set(4, 1)
      assert.equal(1, a:get(4))
    end)

    it("counts copies and from as arrays too", function()
      collect()
      local base = array.live()
      local a = array.from("int8", {1, 2, 3})
      local b = a:copy()
      assert.equal(base + 2, array.live())
      a, b = nil, nil
      collect()
      assert.equal(base, array.live())
    end)
  end)

  describe("across VMs", function()
    it("a worker writes into the caller's array", function()
      local a = array("float64", 4)
      parx.spawn(function() a:set(1, 5) end):join()
      assert.equal(5, a:get(1))
      parx.spawn(function(b) b:set(2, 6); b.data[2] = 7 end, a):join()
      assert.equal(6, a:get(2))
      assert.equal(7, a:get(3))
    end)

    it("arrays made in a worker come back with their values", function()
      local b = parx.spawn(function()
        local t = parx.array.from("int32", {{1, 2}, {3, 4}})
        t:set(2, 2, 40)
        return t
      end):join()
      assert.equal("int32", b:dtype())
      assert.are.same({{1, 2}, {3, 40}}, b:totable())
    end)

    it("travel through channels both ways by reference", function()
      local a = array("float64", {2, 2})
      local ch = parx.channel(4)
      local t = parx.spawn(function(c)
        local arr = c:recv()
        arr:set(2, 2, 42)
        c:send(parx.array.from("int16", {1, 2, 3}))
        return arr:dtype()
      end, ch)
      ch:send(a)
      assert.equal("float64", t:join())
      assert.equal(42, a:get(2, 2))
      local b = ch:recv()
      assert.equal("int16", b:dtype())
      assert.are.same({1, 2, 3}, b:totable())
    end)

    it("other cdata still cannot cross (64-bit integers cross by value)", function()
      local ch = parx.channel(1)
      assert.has_error(function() ch:send(ffi.new("double[2]")) end)
      assert.has_error(function() parx.spawn(function(x) return x end, ffi.new("int32_t", 1)) end)
      assert.has_error(function() ch:send(array("float64", 2).data) end)
    end)

    it("a forged array cannot cross VMs", function()
      local ch = parx.channel(4)
      local a = array("int32", 4)
      local T = ffi.typeof(a)
      -- a struct of the same layout, even with the real header's bytes
      local buf = ffi.new("char[256]")
      ffi.copy(buf, ffi.cast("void *", a), ffi.sizeof("px_array"))
      assert.has_error(function() ch:send(ffi.cast(T, buf)) end)
      -- any memory cast to an array type
      assert.has_error(function() ch:send(ffi.cast(T, ffi.new("int[64]"))) end)
      assert.has_error(function() parx.spawn(function(x) return x end, ffi.cast(T, buf)) end)
      -- a copy of the pointer that holds no reference (it could dangle)
      local copy = ffi.cast(T, ffi.cast("void *", a))
      assert.has_error(function() ch:send(copy) end)
      -- the real one still crosses
      ch:send(a)
      assert.equal(4, #ch:recv())
    end)

    it("every worker sees the same memory", function()
      local n = 8
      local a = array("int64", n)
      local tasks = {}
      for i = 1, n do
        tasks[i] = parx.spawn(function(arr, k) arr:set(k, k * k) end, a, i)
      end
      for i = 1, n do tasks[i]:join() end
      for i = 1, n do assert.equal(i * i, a:get(i)) end
    end)

    it("frees an array that crossed VMs once every reference is gone", function()
      collect_everywhere()
      local base = array.live()
      -- In a function of its own, so that no stale stack slot of this
      -- frame keeps the array reachable (LuaJIT marks whole frames).
      local v = (function()
        local a = array("float32", 1000)
        parx.spawn(function(x)
          x:set(1, 1)
          x = nil
          collectgarbage()
          collectgarbage()
        end, a):join()
        return a:get(1)
      end)()
      assert.equal(1, v)
      collect_everywhere()
      assert.equal(base, array.live())
    end)

    it("frees arrays made in workers and returned", function()
      collect_everywhere()
      local base = array.live()
      local tasks = {}
      for k = 1, 8 do
        tasks[k] = parx.spawn(function(i)
          local t = parx.array("int32", i)
          t:fill(i)
          return t, parx.array("int8", 1)
        end, k)
      end
      local got = {}
      for k = 1, 8 do got[k] = {tasks[k]:join()} end
      assert.equal(base + 16, array.live())
      for k = 1, 8 do assert.equal(k * k, (function(t)
        local s = 0
        for i = 1, #t do s = s + t:get(i) end
        return s
      end)(got[k][1])) end
      tasks, got = nil, nil
      collect_everywhere()
      assert.equal(base, array.live())
    end)
  end)

  it("itemsize is the bytes of one element of each dtype, and the pointer steps by it", function()
    local ffi = require "ffi"
    local sizes = {int8 = 1, int16 = 2, int32 = 4, int64 = 8, uint8 = 1, uint16 = 2,
                   uint32 = 4, uint64 = 8, float16 = 2, bfloat16 = 2, float32 = 4, float64 = 8}
    for _, dt in ipairs(parx.array.dtypes) do
      local a = parx.array(dt, {2, 3})
      assert.equal(sizes[dt], a:itemsize(), dt)
      assert.equal(sizes[dt], ffi.cast("char *", a.data + 1) - ffi.cast("char *", a.data), dt)
    end
  end)
end)
