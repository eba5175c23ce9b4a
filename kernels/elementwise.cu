/*
 * elementwise.cu -- dst = a + b, a * b, s * a.  Computed in the dtype's
 * compute type (float32 for the half types), rounded once on store, as on
 * the CPU path.  dst may alias a or b.
 */
#include "dtype.cuh"
#include "module.h"

template <int D, int OP>
__global__ void binary_kernel(typename pxc_dt<D>::T *dst, const typename pxc_dt<D>::T *a,
                              const typename pxc_dt<D>::T *b, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    typename pxc_dt<D>::C x = pxc_dt<D>::load(a[i]), y = pxc_dt<D>::load(b[i]);
    dst[i] = pxc_dt<D>::store(OP == PXC_ADD ? x + y : x * y);
  }
}

template <int D>
__global__ void scale_kernel(typename pxc_dt<D>::T *dst, const typename pxc_dt<D>::T *a,
                             typename pxc_dt<D>::C s, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = pxc_dt<D>::store(pxc_dt<D>::load(a[i]) * s);
}

int pxc_binary(int op, void *dst, const void *a, const void *b, int dtype, int64_t n) {
  if (!pxc_dtype_ok(dtype)) return pxc_fail(PXC_EINVAL, "unsupported dtype %d", dtype);
  if (op != PXC_ADD && op != PXC_MUL) return pxc_fail(PXC_EINVAL, "unknown operation %d", op);
  if (n <= 0) return 0;
  int rc = pxc_enter();
  if (rc) return rc;
  cudaStream_t s = pxc_g.stream;
  int grid = pxc_grid(n, 4);
  PXC_DISPATCH(dtype, D, {
    typedef typename pxc_dt<D>::T T;
    if (op == PXC_ADD)
      binary_kernel<D, PXC_ADD><<<grid, 256, 0, s>>>((T *)dst, (const T *)a, (const T *)b, n);
    else
      binary_kernel<D, PXC_MUL><<<grid, 256, 0, s>>>((T *)dst, (const T *)a, (const T *)b, n);
  });
  rc = pxc_check_launch("element-wise kernel");
  pxc_leave();
  return rc;
}

int pxc_scale(void *dst, const void *src, double s, int dtype, int64_t n) {
  if (!pxc_dtype_ok(dtype)) return pxc_fail(PXC_EINVAL, "unsupported dtype %d", dtype);
  if (n <= 0) return 0;
  int rc = pxc_enter();
  if (rc) return rc;
  cudaStream_t st = pxc_g.stream;
  int grid = pxc_grid(n, 4);
  PXC_DISPATCH(dtype, D, {
    typedef typename pxc_dt<D>::T T;
    typedef typename pxc_dt<D>::C C;
    scale_kernel<D><<<grid, 256, 0, st>>>((T *)dst, (const T *)src, (C)s, n);
  });
  rc = pxc_check_launch("scale kernel");
  pxc_leave();
  return rc;
}
