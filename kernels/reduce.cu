/*
 * reduce.cu -- sum of all elements, accumulated in float64.  Two passes with
 * no atomics (deterministic for a given device): each block writes one
 * partial sum, then one block adds the partials and the result is
 * downloaded in stream order.
 */
#include "dtype.cuh"
#include "module.h"

__device__ __forceinline__ double block_sum(double v) {
  __shared__ double warp_sums[32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xFFFFFFFFu, v, off);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  int nwarps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < nwarps ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xFFFFFFFFu, v, off);
  return v;
}

template <int D>
__global__ void partial_sum_kernel(double *partials, const typename pxc_dt<D>::T *src,
                                   int64_t n) {
  double acc = 0.0;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    acc += (double)pxc_dt<D>::load(src[i]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void final_sum_kernel(double *out, const double *partials, int count) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

int pxc_sum(const void *src, int dtype, int64_t n, double *result) {
  if (!pxc_dtype_ok(dtype)) return pxc_fail(PXC_EINVAL, "sum: unsupported dtype %d", dtype);
  int rc = pxc_enter();
  if (rc) return rc;
  cudaStream_t s = pxc_g.stream;
  int grid = pxc_grid(n, 8);
  double *partials = NULL;
  rc = pxc_alloc_locked((void **)&partials, sizeof(double) * (grid + 1));
  if (rc == 0) {
    if (n > 0) {
      PXC_DISPATCH(dtype, D, {
        partial_sum_kernel<D><<<grid, 256, 0, s>>>(partials, (const typename pxc_dt<D>::T *)src,
                                                 n);
      });
    } else {
      grid = 0;
    }
    final_sum_kernel<<<1, 1024, 0, s>>>(partials + grid, partials, grid);
    rc = pxc_check_launch("sum kernel");
    if (rc == 0) rc = pxc_download_locked(result, partials + grid, sizeof(double));
    cudaFreeAsync(partials, s);
  }
  pxc_leave();
  return rc;
}
