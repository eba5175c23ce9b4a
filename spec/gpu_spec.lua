-- parx.gpu: device arrays, gpu.matmul, the kernels, and the CPU path.
--
-- The first block runs everywhere: without a GPU it checks the CPU path
-- (OpenBLAS and the C versions of the kernels); with one, the same specs
-- check the GPU.  Results are compared with a naive float64 reference by
-- relative Frobenius error: float64 1e-12, float32 1e-5, tf32 1e-3, float16
-- and bfloat16 1e-2.  Inputs are fresh random numbers each run (the seed is
-- printed on failure); outputs are poisoned with NaN before the call.
-- The second block needs a GPU and is pending, with the reason, without one.
local gpu = parx.gpu
local array = parx.array

local have_gpu, why_not = gpu.available()
local base_seed = os.time() % 1000000
local seed_counter = 0
local function fresh_seed()
  seed_counter = seed_counter + 1
  return base_seed * 1000 + seed_counter
end

local tolerance = {float64 = 1e-12, float32 = 1e-5, tf32 = 1e-3, float16 = 1e-2, bfloat16 = 1e-2}

local function values(a)
  local t = {}
  for i = 1, a:size() do t[i] = a:get(i) end
  return t
end

-- Host random matrix (the C generator; independent of the backend).
local function host_rand(dtype, shape, dist)
  return gpu.rand(dtype, shape, {seed = fresh_seed(), host = true, dist = dist or "normal"})
end

-- Naive float64 C = alpha op(A) op(B) + beta C0 over batch entries.
local function reference(A, B, o)
  o = o or {}
  local a, b = values(A), values(B)
  local ash, bsh = A:shape(), B:shape()
  local ar, ac = ash[#ash - 1], ash[#ash]
  local br, bc = bsh[#bsh - 1], bsh[#bsh]
  local m, k = ar, ac
  if o.transa then m, k = ac, ar end
  local n = o.transb and br or bc
  local batch = math.max(#ash == 3 and ash[1] or 1, #bsh == 3 and bsh[1] or 1)
  local sa = #ash == 3 and m * k or 0
  local sb = #bsh == 3 and k * n or 0
  local c0 = o.c0
  local out = {}
  for bi = 0, batch - 1 do
    for i = 0, m - 1 do
      for j = 0, n - 1 do
        local acc = 0
        for l = 0, k - 1 do
          local ia = o.transa and (l * m + i) or (i * k + l)
          local ib = o.transb and (j * k + l) or (l * n + j)
          acc = acc + a[bi * sa + ia + 1] * b[bi * sb + ib + 1]
        end
        local ic = bi * m * n + i * n + j + 1
        out[ic] = (o.alpha or 1) * acc + (c0 and (o.beta or 0) * c0[ic] or 0)
      end
    end
  end
  return out
end

local function rel_error(C, ref)
  local got = values(C)
  assert.are.equal(#ref, #got)
  local err, norm = 0, 0
  for i = 1, #ref do
    local d = got[i] - ref[i]
    err = err + d * d
    norm = norm + ref[i] * ref[i]
  end
  local r = math.sqrt(err / (norm > 0 and norm or 1))
  assert.is_true(r == r, "NaN in the result (an element left unwritten?)")
  return r
end

local function poisoned(dtype, shape)
  local c = array(dtype, shape)
  c:fill(0 / 0)
  return c
end

local function check_close(C, ref, tol, what)
  local r = rel_error(C, ref)
  assert(r <= tol, string.format("%s: relative error %g > %g (seed base %d)", what, r, tol, base_seed))
end

describe("parx.gpu (" .. (have_gpu and "GPU" or "CPU path") .. ")", function()
  it("reports whether a GPU is there, and why not", function()
    assert.is_boolean(have_gpu)
    local d = gpu.device()
    assert.is_string(d.name)
    if have_gpu then
      assert.are.equal("cuda", d.backend)
    else
      assert.is_string(why_not)
      assert.are.equal("cpu", d.backend)
      assert.are.equal(why_not, d.reason)
    end
  end)

  describe("matmul", function()
    for _, dtype in ipairs({"float64", "float32", "float16", "bfloat16"}) do
      it("multiplies " .. dtype .. " host arrays like a float64 reference", function()
        local A, B = host_rand(dtype, {33, 47}), host_rand(dtype, {47, 29})
        local out = poisoned(dtype, {33, 29})
        local C = gpu.matmul(A, B, {out = out})
        assert.are.equal(out, C)
        assert.are.same({33, 29}, C:shape())
        assert.are.equal(dtype, C:dtype())
        check_close(C, reference(A, B), tolerance[dtype], dtype)
      end)

      it("multiplies " .. dtype .. " device arrays into a device array", function()
        local A, B = host_rand(dtype, {20, 31}), host_rand(dtype, {31, 18})
        local dA, dB = gpu.upload(A), gpu.upload(B)
        local dC = gpu.matmul(dA, dB)
        assert.are.equal(have_gpu, dC:on_device())
        assert.are.same({20, 18}, dC:shape())
        check_close(dC:download(), reference(A, B), tolerance[dtype], dtype)
      end)
    end

    it("uses tf32 for float32 when asked, within 1e-3", function()
      local A, B = host_rand("float32", {64, 96}), host_rand("float32", {96, 40})
      check_close(gpu.matmul(A, B, {tf32 = true}), reference(A, B), tolerance.tf32, "tf32")
    end)

    it("transposes either operand", function()
      for _, t in ipairs({{false, false}, {true, false}, {false, true}, {true, true}}) do
        local ta, tb = t[1], t[2]
        local A = host_rand("float64", ta and {13, 17} or {17, 13})
        local B = host_rand("float64", tb and {11, 13} or {13, 11})
        local C = gpu.matmul(A, B, {transa = ta, transb = tb})
        assert.are.same({17, 11}, C:shape())
        check_close(C, reference(A, B, {transa = ta, transb = tb}), 1e-12, "transposed")
      end
    end)

    it("computes alpha A B + beta C into out", function()
      local A, B = host_rand("float32", {12, 9}), host_rand("float32", {9, 14})
      local C = host_rand("float32", {12, 14})
      local c0 = values(C)
      gpu.matmul(A, B, {out = C, alpha = 1.5, beta = -0.5})
      check_close(C, reference(A, B, {alpha = 1.5, beta = -0.5, c0 = c0}), 1e-5, "alpha/beta")
    end)

    it("multiplies batches of 3-D arrays, and a 3-D batch by one 2-D matrix", function()
      local A, B = host_rand("float32", {3, 10, 12}), host_rand("float32", {3, 12, 7})
      local C = gpu.matmul(A, B)
      assert.are.same({3, 10, 7}, C:shape())
      check_close(C, reference(A, B), 1e-5, "batched")
      local W = host_rand("float32", {12, 5})
      local D = gpu.matmul(A, W)
      assert.are.same({3, 10, 5}, D:shape())
      check_close(D, reference(A, W), 1e-5, "broadcast")
      local dD = gpu.matmul(gpu.upload(A), gpu.upload(W), {sync = true})
      check_close(dD:download(), reference(A, W), 1e-5, "device broadcast")
    end)

    it("handles an empty inner dimension (C = beta C)", function()
      local A, B = array("float32", {4, 0}), array("float32", {0, 3})
      local C = gpu.matmul(A, B, {out = poisoned("float32", {4, 3})})
      for _, v in ipairs(values(C)) do assert.are.equal(0, v) end
    end)

    it("raises on shape, dtype and kind mismatches before any work", function()
      local A32, B32 = array("float32", {4, 5}), array("float32", {6, 3})
      assert.has_error(function() gpu.matmul(A32, B32) end,
                       "matmul: inner dimensions differ (A is 4x5, B is 6x3)")
      assert.has_error(function() gpu.matmul(A32, array("float64", {5, 3})) end,
                       "matmul: dtype mismatch (float32 and float64)")
      assert.has_error(function() gpu.matmul(array("int32", {2, 2}), array("int32", {2, 2})) end)
      assert.has_error(function() gpu.matmul(A32, gpu.zeros("float32", {5, 3})) end)
      assert.has_error(function() gpu.matmul(array("float32", {5}), A32) end)
      assert.has_error(function()
        gpu.matmul(array("float32", {2, 4, 5}), array("float32", {3, 5, 2}))
      end, "matmul: batch sizes differ (2 and 3)")
      assert.has_error(function() gpu.matmul(A32, array("float32", {5, 3}), {beta = 1}) end,
                       "matmul: opts.beta needs opts.out")
      assert.has_error(function()
        gpu.matmul(A32, array("float32", {5, 3}), {out = array("float32", {3, 4})})
      end)
      local sq = array("float32", {5, 5})
      assert.has_error(function() gpu.matmul(sq, sq, {out = sq}) end,
                       "matmul: opts.out must not be A or B")
      assert.has_error(function() gpu.matmul(A32, "x") end)
      assert.has_error(function() gpu.matmul(A32, array("float32", {5, 3}), 7) end)
    end)

    it("lets other tasks run while it works", function()
      local A, B = host_rand("float64", {160, 160}), host_rand("float64", {160, 160})
      local ticks = 0
      local ticker = parx.async(function()
        for _ = 1, 5 do ticks = ticks + 1; parx.sleep(0) end
        return ticks
      end)
      local results = {}
      local workers = {}
      for w = 1, 3 do
        workers[w] = parx.async(function() results[w] = gpu.matmul(A, B) end)
      end
      for w = 1, 3 do workers[w]:join() end
      assert.are.equal(5, ticker:join())
      local ref = reference(A, B)
      for w = 1, 3 do check_close(results[w], ref, 1e-12, "concurrent " .. w) end
    end)
  end)

  describe("device arrays", function()
    it("round-trip through upload and download, and know their shape", function()
      local a = host_rand("float32", {3, 4, 5})
      local d = gpu.upload(a)
      assert.are.same({3, 4, 5}, d:shape())
      assert.are.equal("float32", d:dtype())
      assert.are.equal(60, #d)
      assert.are.same(values(a), values(d:download()))
      assert.matches("parx.gpu.array%(float32, {3, 4, 5}", tostring(d))
    end)

    it("are made by empty, zeros and rand, and checked", function()
      local z = gpu.zeros("float64", {7})
      assert.are.same({0, 0, 0, 0, 0, 0, 0}, values(z:download()))
      assert.are.same({2, 3}, gpu.empty("bfloat16", {2, 3}):shape())
      assert.has_error(function() gpu.empty("int32", {2}) end)
      assert.has_error(function() gpu.empty("float32", {-1}) end)
      assert.has_error(function() gpu.empty("float32", {}) end)
      assert.has_error(function() gpu.rand("float32", {2}, {dist = "cauchy"}) end)
      assert.has_error(function() gpu.rand("float32", {2}, {seed = -1}) end)
      assert.has_error(function() gpu.rand("float32", {2}, {seed = 1e30}) end)
      assert.has_error(function() gpu.rand("float32", {2}, {seed = 0 / 0}) end)
      assert.has_error(function() gpu.empty("float32", {1e30}) end)
      assert.has_error(function() gpu.empty("float32", {2 ^ 40, 2 ^ 40}) end)
      assert.has_error(function() gpu.upload(array("int8", {3})) end)
    end)

    it("cross to worker VMs by reference", function()
      local d = gpu.upload(array.from("float32", {1, 2, 3, 4}))
      local shape, total = parx.spawn(function(x)
        return x:shape()[1], parx.gpu.sum(x)
      end, d):join()
      assert.are.equal(4, shape)
      assert.are.equal(10, total)
    end)
  end)

  describe("random numbers", function()
    it("are reproducible from a seed, on the device and in C alike", function()
      for _, dtype in ipairs({"float16", "bfloat16", "float32", "float64"}) do
        local s = fresh_seed()
        local d1 = values(gpu.rand(dtype, {1001}, {seed = s}):download())
        local d2 = values(gpu.rand(dtype, {1001}, {seed = s}):download())
        local h = values(gpu.rand(dtype, {1001}, {seed = s, host = true}))
        local other = values(gpu.rand(dtype, {1001}, {seed = s + 1, host = true}))
        assert.are.same(d1, d2)
        assert.are.same(h, d1)
        assert.are_not.same(h, other)
        for i = 1, #h do assert(h[i] >= 0 and h[i] < 1, dtype .. " uniform out of [0, 1)") end
      end
    end)

    it("draws normal numbers with mean 0 and variance 1", function()
      local s = fresh_seed()
      local h = values(gpu.randn("float32", {100000}, {seed = s, host = true}))
      local d = values(gpu.randn("float32", {100000}, {seed = s}):download())
      local mean, var, differ = 0, 0, 0
      for i = 1, #h do
        mean = mean + h[i]
        if h[i] ~= d[i] then differ = differ + 1 end
        assert(math.abs(h[i] - d[i]) < 1e-5)
      end
      mean = mean / #h
      for i = 1, #h do var = var + (h[i] - mean) ^ 2 end
      var = var / #h
      assert(math.abs(mean) < 0.02 and math.abs(var - 1) < 0.03,
             string.format("mean %g variance %g", mean, var))
      assert(differ <= 10, differ .. " normal values differ between device and C")
    end)
  end)

  describe("kernels", function()
    it("cast between float32, float16, bfloat16 and float64 like the C versions", function()
      local a = host_rand("float32", {513})
      local d = gpu.upload(a)
      for _, dt in ipairs({"float16", "bfloat16", "float64", "float32"}) do
        local host = gpu.cast(a, dt)
        local dev = gpu.cast(d, dt):download()
        assert.are.equal(dt, host:dtype())
        assert.are.same(values(host), values(dev))
        local back = values(gpu.cast(host, "float32"))
        local src = values(a)
        local tol = dt == "float16" and 1e-3 or dt == "bfloat16" and 8e-3 or 0
        for i = 1, #src do
          assert(math.abs(back[i] - src[i]) <= tol * math.abs(src[i]) + 1e-7,
                 dt .. " round trip " .. src[i] .. " -> " .. back[i])
        end
      end
    end)

    it("add, multiply and scale element-wise", function()
      for _, dtype in ipairs({"float32", "float64", "float16", "bfloat16"}) do
        local a, b = host_rand(dtype, {301}), host_rand(dtype, {301})
        local da, db = gpu.upload(a), gpu.upload(b)
        local va, vb = values(a), values(b)
        local tol = (dtype == "float64" and 1e-15) or (dtype == "float32" and 1e-6) or 1e-2
        local sum_h, prod_h, sc_h = gpu.add(a, b), gpu.mul(a, b), gpu.scale(a, -2.5)
        assert.are.same(values(sum_h), values(gpu.add(da, db):download()))
        assert.are.same(values(prod_h), values(gpu.mul(da, db):download()))
        assert.are.same(values(sc_h), values(gpu.scale(da, -2.5):download()))
        local s, p, c = values(sum_h), values(prod_h), values(sc_h)
        for i = 1, #va do
          assert(math.abs(s[i] - (va[i] + vb[i])) <= tol * (math.abs(va[i]) + math.abs(vb[i])) + 1e-30)
          assert(math.abs(p[i] - va[i] * vb[i]) <= tol * math.abs(va[i] * vb[i]) + 1e-30)
          assert(math.abs(c[i] + 2.5 * va[i]) <= tol * math.abs(2.5 * va[i]) + 1e-30)
        end
        -- in place: a = a + b
        gpu.add(da, db, da)
        assert.are.same(s, values(da:download()))
      end
      assert.has_error(function() gpu.add(array("float32", {3}), array("float32", {4})) end)
      assert.has_error(function() gpu.add(array("float32", {3}), gpu.zeros("float32", {3})) end)
    end)

    it("fill and sum", function()
      local d = gpu.empty("float32", {1000})
      gpu.fill(d, 0.5)
      assert.are.equal(500, gpu.sum(d))
      d:fill(2)
      assert.are.equal(2000, gpu.sum(d))
      local a = host_rand("float64", {4097})
      local want = 0
      for _, v in ipairs(values(a)) do want = want + v end
      assert(math.abs(gpu.sum(a) - want) < 1e-9)
      assert(math.abs(gpu.sum(gpu.upload(a)) - want) < 1e-9)
      assert.are.equal(0, gpu.sum(gpu.empty("float32", {0})))
    end)

    it("synchronize returns once queued work is done", function()
      local d = gpu.rand("float32", {64, 64}, {seed = 1})
      local c = gpu.matmul(d, d)
      gpu.synchronize()
      assert.are.same({64, 64}, c:shape())
    end)
  end)

  describe("PARX_GPU", function()
    local bin = os.getenv("PARX_BIN") or arg[-1] or "build/parx"
    local function run(env, code)
      local p = io.popen(env .. " " .. bin .. " -e '" .. code .. "' 2>&1; echo \"rc=$?\"")
      local out = p:read("*a")
      p:close()
      return out
    end

    it("=off selects the CPU path, with the same random numbers", function()
      local out = run("PARX_GPU=off",
        "local g = parx.gpu; print(g.available()); " ..
        "local r = g.rand(\"float32\", {1000}, {seed = 7}):download(); " ..
        "print(string.format(\"%.9g %.9g\", r:get(1), r:get(1000)))")
      assert.matches("false\tdisabled by PARX_GPU=off", out, 1, true)
      local r = gpu.rand("float32", {1000}, {seed = 7}):download()
      assert.matches(string.format("%.9g %.9g", r:get(1), r:get(1000)), out, 1, true)
    end)

    it("=require makes a missing GPU an error", function()
      local out = run("PARX_GPU=require PARX_CUDA_MODULE=/nonexistent/parx_cuda.so",
        "print(pcall(parx.gpu.matmul, parx.array(\"float32\", {2, 2}), " ..
        "parx.array(\"float32\", {2, 2})))")
      assert.matches("PARX_GPU=require but no GPU", out, 1, true)
    end)
  end)

  it("numel and # of a device array count its elements, whatever its shape", function()
    for _, shape in ipairs({{7}, {3, 4}, {2, 3, 5}, {0}}) do
      local d = gpu.zeros("float32", shape)
      local n = 1
      for _, s in ipairs(shape) do n = n * s end
      assert.equal(n, d:numel())
      assert.equal(n, #d)
      assert.equal(n, #d:download())
    end
  end)

  it("tflops is 2*m*n*k*batch flops over the seconds, in units of 10^12", function()
    assert.equal(2e9 / 1e12, gpu.tflops(1000, 1000, 1000, 1))
    assert.equal(2 * 64 * 32 * 16 * 3 / 0.5 / 1e12, gpu.tflops(64, 32, 16, 0.5, 3))
    assert.equal(gpu.tflops(10, 20, 30, 2), gpu.tflops(20, 10, 30, 2))
  end)

  it("tflops with a bad argument raises, naming it, from the caller's line", function()
    local ok, err = pcall(gpu.tflops, "a", 1, 1, 1)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'tflops' (m must be a number > 0, got string)", 1, true), err)
    ok, err = pcall(function() local v = gpu.tflops(1, 1, 1, 0); return v end)
    assert.truthy(err:find("gpu_spec.lua:%d+: bad argument #4 to 'tflops' %(seconds"), err)
    assert.has_error(function() gpu.tflops(1, 1, 1, 1, -2) end)
  end)
end)

describe("parx.gpu on the GPU", function()
  if not have_gpu then
    it("needs a GPU", function() pending("no GPU: " .. tostring(why_not)) end)
    return
  end

  it("names the device and its compute capability", function()
    local d = gpu.device()
    assert.is_string(d.name)
    assert.matches("^%d+%.%d+$", d.compute_capability)
    assert(d.memory > 0 and d.multiprocessors > 0)
  end)

  it("multiplies 256x256 matrices in every dtype within tolerance", function()
    for _, mode in ipairs({"float64", "float32", "tf32", "float16", "bfloat16"}) do
      local dtype = mode == "tf32" and "float32" or mode
      local A, B = host_rand(dtype, {256, 192}), host_rand(dtype, {192, 160})
      local dC = gpu.empty(dtype, {256, 160})
      dC:fill(0 / 0)
      gpu.matmul(gpu.upload(A), gpu.upload(B), {out = dC, tf32 = mode == "tf32"})
      check_close(dC:download(), reference(A, B), tolerance[mode], mode)
    end
  end)

  it("turns out-of-memory into an error and stays usable", function()
    local ok, err = pcall(gpu.empty, "float32", {2 ^ 40})
    assert.is_false(ok)
    assert.is_truthy(err:find("out of memory") or err:find("not enough memory"), err)
    local d = gpu.zeros("float32", {10})
    d:fill(1)
    assert.are.equal(10, gpu.sum(d))
  end)

  it("frees device memory when arrays are collected, for reuse", function()
    local function round()
      for _ = 1, 20 do gpu.empty("float32", {64, 1024, 1024}) end -- 256 MiB each
      collectgarbage()
      collectgarbage()
      gpu.synchronize()
      return gpu.device().free_memory
    end
    -- The stream-ordered pool keeps freed blocks for reuse rather than
    -- handing them back to the driver: after a first round has filled it,
    -- a second round of the same arrays takes nothing more.
    local first = round()
    local second = round()
    assert(first - second < 2 ^ 30, "device memory not reused: " .. (first - second))
  end)
end)
