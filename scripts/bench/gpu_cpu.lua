-- The CPU path: gpu.matmul on host arrays (OpenBLAS on the libuv pool,
-- the task parked) against cblas_sgemm/cblas_dgemm called directly through
-- the FFI, same process, same inputs, alternating, median of 5.
--
--   PARX_GPU=off parx scripts/bench/gpu_cpu.lua [N]     (default 2048)
--   PARX_GPU=off parx scripts/bench/gpu_cpu.lua --one DTYPE N REPS
-- The second form times gpu.matmul alone (one warm-up, then the median of
-- REPS) and prints "parx DTYPE N SECONDS GFLOPS CPU" (CPU: the process's
-- CPU seconds per call, all threads), the line gpu_cblas (C) prints for
-- the same product: gpu_bench.sh runs the two as separate processes,
-- interleaved.
local ffi = require "ffi"
local gpu = parx.gpu

local function median(t)
  table.sort(t)
  return t[math.floor(#t / 2) + 1]
end

ffi.cdef [[
struct px_timeval { long sec, usec; };
struct px_rusage { struct px_timeval utime, stime; long rest[14]; };
int getrusage(int who, struct px_rusage *usage);
]]
local function cpu_seconds()
  local ru = ffi.new("struct px_rusage")
  ffi.C.getrusage(0, ru)
  return tonumber(ru.utime.sec + ru.stime.sec) + tonumber(ru.utime.usec + ru.stime.usec) * 1e-6
end

if arg and arg[1] == "--one" then
  local dtype, n, reps = arg[2], tonumber(arg[3]), tonumber(arg[4])
  local a = gpu.rand(dtype, {n, n}, {seed = 1, host = true})
  local b = gpu.rand(dtype, {n, n}, {seed = 2, host = true})
  local opts = {out = parx.array(dtype, {n, n})}
  -- Every worker has run a task and is idle now: they must not take CPU
  -- from OpenBLAS's threads.
  local started = {}
  for i = 1, 2 * parx.pool.size() do started[i] = parx.spawn(function() return i end) end
  for _, t in ipairs(started) do t:join() end
  gpu.matmul(a, b, opts)
  local t = {}
  local cpu0 = cpu_seconds()
  for r = 1, reps do
    local t0 = parx.now()
    gpu.matmul(a, b, opts)
    t[r] = parx.now() - t0
  end
  local cpu = (cpu_seconds() - cpu0) / reps
  local s = median(t)
  print(string.format("parx %s %d %.6f %.1f %.6f", dtype, n, s, 2 * n * n * n / s / 1e9, cpu))
  return
end

ffi.cdef [[
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);
void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha,
                 const double *a, int lda, const double *b, int ldb, double beta,
                 double *c, int ldc);
]]
-- parx opens OpenBLAS privately (platform/blas.c): open it again by name,
-- the same library and thread pool.
local blas = ffi.load("libopenblas.so.0")
local ROW_MAJOR, NO_TRANS = 101, 111

local n = tonumber(arg and arg[1]) or 2048
print(string.format("# CPU path on %s (gpu.available() = %s)", gpu.device().name,
                    tostring((gpu.available()))))

for _, dtype in ipairs({"float32", "float64"}) do
  local a = gpu.rand(dtype, {n, n}, {seed = 1, host = true})
  local b = gpu.rand(dtype, {n, n}, {seed = 2, host = true})
  local c = parx.array(dtype, {n, n})
  local gemm = dtype == "float32" and blas.cblas_sgemm or blas.cblas_dgemm
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
