/* cast.cu -- convert between float16, bfloat16, float32 and float64. */
#include "dtype.cuh"
#include "module.h"

template <int S, int D>
__global__ void cast_kernel(typename pxc_dt<D>::T *dst, const typename pxc_dt<S>::T *src,
                            int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    /* Through the source's compute type; float64 -> half goes through
     * float32, like the CPU path. */
    typename pxc_dt<S>::C v = pxc_dt<S>::load(src[i]);
    dst[i] = pxc_dt<D>::store((typename pxc_dt<D>::C)v);
  }
}

int pxc_cast(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n) {
  if (!pxc_dtype_ok(dst_dtype) || !pxc_dtype_ok(src_dtype))
    return pxc_fail(PXC_EINVAL, "cast: unsupported dtype %d -> %d", src_dtype, dst_dtype);
  if (n <= 0) return 0;
  int rc = pxc_enter();
  if (rc) return rc;
  cudaStream_t s = pxc_g.stream;
  int grid = pxc_grid(n, 4);
  PXC_DISPATCH(src_dtype, S, {
    PXC_DISPATCH(dst_dtype, D, {
      cast_kernel<S, D><<<grid, 256, 0, s>>>((typename pxc_dt<D>::T *)dst,
                                            (const typename pxc_dt<S>::T *)src, n);
    });
  });
  rc = pxc_check_launch("cast kernel");
  pxc_leave();
  return rc;
}
