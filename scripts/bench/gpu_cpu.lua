-- The CPU path: gpu.matmul on host arrays (OpenBLAS on the libuv pool,
-- the task parked) against cblas_sgemm/cblas_dgemm called directly through
-- the FFI, same process, same inputs, alternating, median of 5.
--
--   PARX_GPU=off parx scripts/bench/gpu_cpu.lua [N]     (default 2048)
local ffi = require "ffi"
local gpu = parx.gpu

ffi.cdef [[
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);
void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha,
                 const double *a, int lda, const double *b, int ldb, double beta,
                 double *c, int ldc);
]]
local ROW_MAJOR, NO_TRANS = 101, 111

local n = tonumber(arg and arg[1]) or 2048
print(string.format("# CPU path on %s (gpu.available() = %s)", gpu.device().name,
                    tostring((gpu.available()))))

local function median(t)
  table.sort(t)
  return t[math.floor(#t / 2) + 1]
end

for _, dtype in ipairs({"float32", "float64"}) do
  local a = gpu.rand(dtype, {n, n}, {seed = 1, host = true})
  local b = gpu.rand(dtype, {n, n}, {seed = 2, host = true})
  local c = parx.array(dtype, {n, n})
  local gemm = dtype == "float32" and ffi.C.cblas_sgemm or ffi.C.cblas_dgemm
  local function direct() gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, n, n, 1, a.data, n, b.data, n, 0, c.data, n) end
  local opts = {out = c}
  local function parx_mm() gpu.matmul(a, b, opts) end
  direct()
  parx_mm()
  local td, tp = {}, {}
  for t = 1, 5 do
    local t0 = parx.now(); direct(); td[t] = parx.now() - t0
    t0 = parx.now(); parx_mm(); tp[t] = parx.now() - t0
  end
  local d, p = median(td), median(tp)
  local flops = 2 * n * n * n
  print(string.format("%-8s %5d  OpenBLAS %.3f s %7.1f GFLOP/s   gpu.matmul %.3f s %7.1f GFLOP/s   ratio %.3f",
                      dtype, n, d, flops / d / 1e9, p, flops / p / 1e9, d / p))
end
