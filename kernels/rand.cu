/*
 * rand.cu -- counter-based random numbers.  Each thread turns one Philox
 * block into up to four elements; the (seed, index) -> value mapping is in
 * runtime/gpu/numeric.h, shared with the CPU path, so it does not depend on
 * the grid.
 */
#include "dtype.cuh"
#include "module.h"

template <int D>
__global__ void uniform_kernel(typename pxc_dt<D>::T *dst, int64_t n, uint64_t seed) {
  typedef typename pxc_dt<D>::T T;
  const int per = D == PXC_F64 ? 2 : 4; /* elements per Philox block */
  int64_t blocks = (n + per - 1) / per;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < blocks; j += stride) {
    px_philox_block r = px_philox((uint64_t)j, seed);
    int64_t base = j * per;
#pragma unroll
    for (int e = 0; e < per; e++) {
      if (base + e >= n) break;
      T v;
      if (D == PXC_F64) {
        double u = ((double)(r.w[2 * e] >> 5) * 67108864.0 + (double)(r.w[2 * e + 1] >> 6)) *
                   (1.0 / 9007199254740992.0);
        memcpy(&v, &u, sizeof v);
      } else if (D == PXC_F32) {
        float u = (float)(r.w[e] >> 8) * (1.0f / 16777216.0f);
        memcpy(&v, &u, sizeof v);
      } else if (D == PXC_F16) {
        uint16_t h = px_half_from_float((float)(r.w[e] >> 21) * (1.0f / 2048.0f));
        memcpy(&v, &h, sizeof v);
      } else {
        uint16_t h = px_bf16_from_float((float)(r.w[e] >> 24) * (1.0f / 256.0f));
        memcpy(&v, &h, sizeof v);
      }
      dst[base + e] = v;
    }
  }
}

template <int D>
__global__ void normal_kernel(typename pxc_dt<D>::T *dst, int64_t n, uint64_t seed) {
  int64_t blocks = (n + 3) / 4;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < blocks; j += stride) {
    px_philox_block r = px_philox((uint64_t)j, seed);
    int64_t base = j * 4;
#pragma unroll
    for (int e = 0; e < 4; e++) {
      if (base + e >= n) break;
      int p = e / 2;
      double z = px_normal_from(r.w[2 * p], r.w[2 * p + 1], e & 1);
      if (D == PXC_F64)
        dst[base + e] = pxc_dt<D>::store((typename pxc_dt<D>::C)z);
      else
        dst[base + e] = pxc_dt<D>::store((float)z);
    }
  }
}

int pxc_rand(void *dst, int dtype, int64_t n, uint64_t seed, int normal) {
  if (!pxc_dtype_ok(dtype)) return pxc_fail(PXC_EINVAL, "rand: unsupported dtype %d", dtype);
  if (n <= 0) return 0;
  int rc = pxc_enter();
  if (rc) return rc;
  cudaStream_t s = pxc_g.stream;
  int per = (dtype == PXC_F64 && !normal) ? 2 : 4;
  int grid = pxc_grid((n + per - 1) / per, 1);
  PXC_DISPATCH(dtype, D, {
    typedef typename pxc_dt<D>::T T;
    if (normal)
      normal_kernel<D><<<grid, 256, 0, s>>>((T *)dst, n, seed);
    else
      uniform_kernel<D><<<grid, 256, 0, s>>>((T *)dst, n, seed);
  });
  rc = pxc_check_launch("rand kernel");
  pxc_leave();
  return rc;
}
