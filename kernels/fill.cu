/* fill.cu -- set every element to one value (converted on the host, once). */
#include "dtype.cuh"
#include "module.h"

template <typename T> __global__ void fill_kernel(T *dst, int64_t n, T value) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = value;
}

int pxc_fill(void *dst, int dtype, int64_t n, double value) {
  if (!pxc_dtype_ok(dtype)) return pxc_fail(PXC_EINVAL, "fill: unsupported dtype %d", dtype);
  if (n <= 0) return 0;
  int rc = pxc_enter();
  if (rc) return rc;
  int grid = pxc_grid(n, 4);
  cudaStream_t s = pxc_g.stream;
  /* The conversion matches the CPU path: float64 -> float32 -> half. */
  PXC_DISPATCH(dtype, D, {
    typedef typename pxc_dt<D>::T T;
    T v;
    if (D == PXC_F16) {
      uint16_t h = px_half_from_float((float)value);
      memcpy(&v, &h, sizeof v);
    } else if (D == PXC_BF16) {
      uint16_t h = px_bf16_from_float((float)value);
      memcpy(&v, &h, sizeof v);
    } else {
      v = (T)value;
    }
    fill_kernel<T><<<grid, 256, 0, s>>>((T *)dst, n, v);
  });
  rc = pxc_check_launch("fill kernel");
  pxc_leave();
  return rc;
}
