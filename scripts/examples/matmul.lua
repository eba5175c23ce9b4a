-- The seeds' GPU example, written with parx:
--
--   device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
--   x = torch.rand(10000, 10000, device=device)
--   y = torch.rand(10000, 10000, device=device)
--   z = torch.matmul(x, y)
--
-- Runs on the GPU when there is one and on the CPU (OpenBLAS) otherwise,
-- and prints which, the time and the achieved TFLOP/s.
--
--   parx scripts/examples/matmul.lua [N] [dtype] [tf32]
-- N defaults to 10000 (CI runs a small one); dtype float32 (or float64,
-- float16, bfloat16); a third argument "tf32" lets float32 use tensor cores.
local gpu = parx.gpu

local n = tonumber(arg and arg[1]) or 10000
local dtype = arg and arg[2] or "float32"
local tf32 = arg and arg[3] == "tf32"

local on_gpu, why = gpu.available()
if on_gpu then
  local d = gpu.device()
  print(string.format("device: GPU %s (compute capability %s, %.0f GiB)", d.name,
                      d.compute_capability, d.memory / 2 ^ 30))
else
  print(string.format("device: %s; no GPU: %s", gpu.device().name, why))
end

-- torch.rand: uniform numbers in [0, 1), made where the product runs.
local x = gpu.rand(dtype, {n, n})
local y = gpu.rand(dtype, {n, n})
local function timed()
  local t0 = parx.now()
  local z = gpu.matmul(x, y, {tf32 = tf32})
  gpu.synchronize()
  return z, parx.now() - t0
end

-- The first product includes the library's one-time set-up (cuBLAS picks
-- its kernels, the memory pool grows); the second is the steady state.
local z, first = timed()
local seconds
z, seconds = timed()

print(string.format("matmul %dx%d %s%s on the %s: %.3f s, %.2f TFLOP/s (first call %.3f s)",
                    n, n, dtype, tf32 and " (tf32)" or "", on_gpu and "GPU" or "CPU", seconds,
                    gpu.tflops(n, n, n, seconds), first))

-- print(result), the way torch shows a big tensor: its corners.
local h = z:download()
local function at(i, j) return string.format("%.4f", h:get((i - 1) * n + j)) end
local function row(i)
  if n <= 6 then
    local t = {}
    for j = 1, n do t[j] = at(i, j) end
    return table.concat(t, ", ")
  end
  return table.concat({at(i, 1), at(i, 2), at(i, 3), "...", at(i, n - 2), at(i, n - 1), at(i, n)}, ", ")
end
local rows = {}
if n <= 6 then
  for i = 1, n do rows[#rows + 1] = "[" .. row(i) .. "]" end
else
  for _, i in ipairs({1, 2, 3}) do rows[#rows + 1] = "[" .. row(i) .. "]" end
  rows[#rows + 1] = "..."
  for _, i in ipairs({n - 2, n - 1, n}) do rows[#rows + 1] = "[" .. row(i) .. "]" end
end
print("result(" .. table.concat(z:shape(), "x") .. ", " .. z:dtype() .. ") =\n[" ..
      table.concat(rows, ",\n ") .. "]")
