-- gpu.matmul on the GPU, the parx side of the table against direct cuBLAS
-- (scripts/bench/gpu_cublas.c, same sizes, same random data kind, same
-- timing: warm-up, 5 trials of about 0.2 s, median time per product).
--
--   parx scripts/bench/gpu_matmul.lua [sizes...]
-- Prints "parx MODE N MS TFLOPS" for device arrays (queued back to back,
-- one synchronize per trial), "parx-sync MODE N MS TFLOPS" with the task
-- parked after every product (opts.sync), and "parx-host MODE N MS TFLOPS
-- TRANSFER_MS" for host arrays in and out (staged copies included).
local gpu = parx.gpu
assert(gpu.available(), "gpu_matmul.lua needs a GPU")

local sizes = {}
for i = 1, #arg do sizes[#sizes + 1] = tonumber(arg[i]) end
if #sizes == 0 then sizes = {1024, 2048, 4096, 8192} end

local modes = {
  {name = "float32", dtype = "float32", rate = 50e12},
  {name = "tf32", dtype = "float32", tf32 = true, rate = 500e12},
  {name = "bfloat16", dtype = "bfloat16", rate = 500e12},
}

local function median(t)
  table.sort(t)
  return t[math.floor(#t / 2) + 1]
end

local function time_trials(reps, fn)
  for _ = 1, 3 do fn() end
  gpu.synchronize()
  local ms = {}
  for t = 1, 5 do
    local t0 = parx.now()
    for _ = 1, reps do fn() end
    gpu.synchronize()
    ms[t] = (parx.now() - t0) * 1e3 / reps
  end
  return median(ms)
end

print("# device " .. gpu.device().name)
for _, mode in ipairs(modes) do
  for _, n in ipairs(sizes) do
    local flops = 2 * n * n * n
    local reps = math.max(3, math.min(2000, math.floor(0.2 * mode.rate / flops)))
    local a = gpu.rand(mode.dtype, {n, n}, {seed = 1})
    local b = gpu.rand(mode.dtype, {n, n}, {seed = 2})
    local c = gpu.empty(mode.dtype, {n, n})
    local opts = {out = c, tf32 = mode.tf32}
    local ms = time_trials(reps, function() gpu.matmul(a, b, opts) end)
    print(string.format("parx %s %d %.4f %.1f", mode.name, n, ms, flops / (ms * 1e-3) / 1e12))
    local sync_opts = {out = c, tf32 = mode.tf32, sync = true}
    ms = time_trials(reps, function() gpu.matmul(a, b, sync_opts) end)
    print(string.format("parx-sync %s %d %.4f %.1f", mode.name, n, ms, flops / (ms * 1e-3) / 1e12))
    if n >= 4096 then
      -- host arrays in, host array out: two uploads, the product, a download
      local ha, hb = a:download(), b:download()
      local hc = c:download()
      local host_opts = {out = hc, tf32 = mode.tf32}
      local host_ms = time_trials(2, function() gpu.matmul(ha, hb, host_opts) end)
      local up = time_trials(2, function() gpu.upload(ha) end)
      local down = time_trials(2, function() c:download(hc) end)
      print(string.format("parx-host %s %d %.4f %.1f %.1f", mode.name, n, host_ms,
                          flops / (host_ms * 1e-3) / 1e12, 2 * up + down))
    end
    a, b, c = nil, nil, nil
    collectgarbage()
    collectgarbage()
  end
end
