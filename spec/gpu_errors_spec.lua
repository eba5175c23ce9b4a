-- How parx reports a GPU failure, on any machine: spec/gpu_stub_module.c
-- is a GPU module whose calls fail as CUDA's do, loaded through
-- $PARX_CUDA_MODULE in a child parx.  Failures come through the error table
-- (core/px.h): an operation that parks gives nil, "NAME: message: detail",
-- "NAME" to the C layer, and parx.gpu raises it with the operation's name.
local BUILD = os.getenv("PARX_BUILD") or "build"
local BIN = os.getenv("PARX_BIN") or BUILD .. "/parx"
local CC = os.getenv("PARX_CC") or "cc"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local module = os.tmpname() .. ".so"

local function run(code)
  local p = io.popen("PARX_CUDA_MODULE=" .. q(module) .. " " .. q(BIN) .. " -e " .. q(code)
    .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out
end

describe("GPU errors through the error table", function()
  setup(function()
    local p = io.popen(CC .. " -std=gnu11 -shared -fPIC -Iruntime -o " .. q(module)
      .. " spec/gpu_stub_module.c 2>&1")
    local out = p:read("*a")
    assert(p:close(), "building the stub GPU module failed:\n" .. out)
  end)
  teardown(function() os.remove(module) end)

  it("a failed device allocation raises 'gpu array: ENOMEM: not enough memory: <CUDA's message>'", function()
    local out = run([[
      assert(parx.gpu.available())
      print(pcall(parx.gpu.empty, "float32", {1024, 1024}))]])
    assert.matches("false\tgpu array: ENOMEM: not enough memory: "
      .. "stubErrorMemoryAllocation: out of memory\n", out, 1, true)
    assert.matches("rc=0", out, 1, true)
  end)

  it("a failed cuBLAS call raises with CUBLAS and the call's name", function()
    local out = run([[
      local g = parx.gpu
      local a = g.zeros("float32", {4, 4})
      print(pcall(g.matmul, a, a))]])
    -- raised at the caller's line (the pcall in the chunk's third line)
    assert.matches("false\t(command line):3: matmul: CUBLAS: cuBLAS error: CUBLAS_STATUS_EXECUTION_FAILED\n",
      out, 1, true)
  end)

  it("an asynchronous fault reaches a parked task as nil, message, code, and gpu.synchronize raises it", function()
    local out = run([[
      local C = require "parx.c.gpu"
      local g = parx.gpu
      local a = g.zeros("float32", {4})
      g.add(a, a)  -- queued; the stub's launch leaves a sticky error
      print(C.synchronize())
      print(pcall(g.synchronize))]])
    assert.matches("nil\tCUDA: CUDA error: stubErrorLaunchFailure: unspecified launch failure\tCUDA\n",
      out, 1, true)
    assert.matches("false\tsynchronize: CUDA: CUDA error: stubErrorLaunchFailure", out, 1, true)
  end)

  it("a failed device query raises CUDA", function()
    local out = run([[print(pcall(parx.gpu.device))]])
    assert.matches("false\tdevice: CUDA: CUDA error: stubErrorNoDevice", out, 1, true)
  end)
end)
