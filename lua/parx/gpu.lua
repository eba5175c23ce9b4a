-- parx.gpu: matrix products and device arrays on CUDA (cuBLAS and the
-- kernels in kernels/), with the same results on the CPU when there is no
-- GPU.  The work is native (runtime/gpu/*.c); this file only turns the
-- "nil, message, code" that a parked operation resumes with (the error
-- table's, core/px.h) into an error, and adds conveniences.
--
--   local gpu = parx.gpu
--   local a = gpu.rand("float32", {4096, 4096}, {seed = 1})
--   local c = gpu.matmul(a, a, {tf32 = true})   -- device array, queued
--   print(gpu.sum(c))                           -- parks until computed
--   local host = c:download()                   -- a parx.array
local C = require "parx.c.gpu"
local options = require "parx.opts"

local gpu = {}

-- Operations that park resume with (nil, message, code) when the stream reports
-- an error; raise it, and the C side's own errors, at the caller's line
-- (pcall is cheap in LuaJIT, and a task may park inside it).
local function raising(f, name)
  return function(...)
    local ok, r, err = pcall(f, ...)
    if not ok then
      -- px_error_user's messages already name the caller's line.
      local msg, where = tostring(r):gsub("^[^:]*parx/gpu%.lua:%d+: ", ""), options.where()
      if msg:sub(1, #where) == where then error(msg, 0) end
      error(where .. msg, 0)
    end
    if r == nil and err ~= nil then error(name .. ": " .. tostring(err), 2) end
    return r
  end
end

gpu.available = C.available        -- true, or false and the reason
gpu.device = C.device              -- {name, memory, compute_capability, ...}
gpu.upload = raising(C.upload, "upload")
gpu.empty = C.empty                -- (dtype, shape)
gpu.zeros = C.zeros
gpu.rand = C.rand                  -- (dtype, shape, {seed=, dist=, host=})
gpu.matmul = raising(C.matmul, "matmul")
gpu.add, gpu.mul, gpu.scale = C.add, C.mul, C.scale
gpu.cast, gpu.fill = C.cast, C.fill
gpu.sum = raising(C.sum, "sum")

-- Normal numbers: gpu.rand with dist = "normal" (its other options).
local RANDN_OPTS = options.known{"host", "seed"}
function gpu.randn(dtype, shape, opts)
  local o = {dist = "normal"}
  if opts ~= nil then
    options.check_table("gpu.randn", 3, opts, RANDN_OPTS)
    for k, v in pairs(opts) do o[k] = v end
  end
  o.dist = "normal"
  return C.rand(dtype, shape, o)
end

-- Waits (parks) until all queued GPU work has run; raises the error an
-- asynchronous launch left behind.
function gpu.synchronize()
  local _, err = C.synchronize()
  if err ~= nil then error("synchronize: " .. tostring(err), 2) end
end

-- The device array methods live on the shared metatable; d:download()
-- parks, so it gets the same treatment as the functions above.
do
  local probe = C.empty("float32", {0})
  local mt = debug.getmetatable(probe) -- behind __metatable (shared.c)
  if mt and rawget(mt, "download") and not rawget(mt, "__px_download_wrapped") then
    mt.download = raising(mt.download, "download")
    mt.__px_download_wrapped = true
  end
end

-- Achieved TFLOP/s of an m x k by k x n product that took `seconds`.
-- Arguments are checked here so that a mistake names the caller's line,
-- not an arithmetic error inside this file.
local function positive(v, n, what)
  if type(v) ~= "number" or not (v > 0) then
    error(("bad argument #%d to 'tflops' (%s must be a number > 0, got %s)"):format(
      n, what, type(v) == "number" and tostring(v) or type(v)), 3)
  end
end

function gpu.tflops(m, n, k, seconds, batch)
  positive(m, 1, "m"); positive(n, 2, "n"); positive(k, 3, "k")
  positive(seconds, 4, "seconds")
  if batch ~= nil then positive(batch, 5, "batch") end
  return 2 * m * n * k * (batch or 1) / seconds / 1e12
end

return gpu
