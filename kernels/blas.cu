/*
 * blas.cu -- matrix products through cuBLAS.
 *
 * parx arrays are row-major and cuBLAS is column-major; a row-major m x n
 * buffer read column-major is the transpose, so C = op(A) op(B) is computed
 * as C^T = op(B)^T op(A)^T: cuBLAS gets B first, then A, with n and m
 * swapped.  One call, cublasGemmStridedBatchedEx, covers 2-D (batch 1) and
 * batched 3-D; the handle, its stream and its 32 MiB workspace are set up
 * once in module.cu.
 */
#include <limits.h>

#include "module.h"

int pxc_gemm_run(const pxc_gemm *g) {
  cudaDataType_t type;
  cublasComputeType_t compute;
  switch (g->dtype) {
  case PXC_F16: type = CUDA_R_16F; compute = CUBLAS_COMPUTE_32F; break;
  case PXC_BF16: type = CUDA_R_16BF; compute = CUBLAS_COMPUTE_32F; break;
  case PXC_F32:
    type = CUDA_R_32F;
    compute = g->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    break;
  case PXC_F64: type = CUDA_R_64F; compute = CUBLAS_COMPUTE_64F; break;
  default: return pxc_fail(PXC_EINVAL, "matmul: unsupported dtype %d", g->dtype);
  }
  if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX || g->batch > INT_MAX)
    return pxc_fail(PXC_EINVAL, "matmul: a dimension exceeds cuBLAS's 32-bit limit");
  if (g->m == 0 || g->n == 0 || g->batch == 0) return 0;
  int m = (int)g->m, n = (int)g->n, k = (int)g->k;
  int lda = g->transa ? m : k, ldb = g->transb ? k : n, ldc = n;
  cublasOperation_t opa = g->transa ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opb = g->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
  /* Scalars follow the compute type. */
  float alpha32 = (float)g->alpha, beta32 = (float)g->beta;
  const void *alpha = compute == CUBLAS_COMPUTE_64F ? (const void *)&g->alpha : &alpha32;
  const void *beta = compute == CUBLAS_COMPUTE_64F ? (const void *)&g->beta : &beta32;

  int rc = pxc_enter();
  if (rc) return rc;
  cublasStatus_t st;
  if (k == 0) {
    /* cuBLAS rejects k = 0 on some paths; C = beta C is a scale, which
     * gemm with k = 1 and alpha = 0 performs.  Reading one element of A and
     * B would be out of range, so use C itself as a harmless operand. */
    const float zero32 = 0.0f;
    const double zero64 = 0.0;
    const void *zero = compute == CUBLAS_COMPUTE_64F ? (const void *)&zero64 : &zero32;
    st = cublasGemmStridedBatchedEx(pxc_g.blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, 1, zero,
                                    g->c, type, ldc, g->stride_c, g->c, type, 1,
                                    g->stride_c, beta, g->c, type, ldc, g->stride_c,
                                    (int)g->batch, compute, CUBLAS_GEMM_DEFAULT);
  } else if (g->batch == 1) {
    st = cublasGemmEx(pxc_g.blas, opb, opa, n, m, k, alpha, g->b, type, ldb, g->a, type, lda,
                      beta, g->c, type, ldc, compute, CUBLAS_GEMM_DEFAULT);
  } else {
    st = cublasGemmStridedBatchedEx(pxc_g.blas, opb, opa, n, m, k, alpha, g->b, type, ldb,
                                    g->stride_b, g->a, type, lda, g->stride_a, beta, g->c, type,
                                    ldc, g->stride_c, (int)g->batch, compute,
                                    CUBLAS_GEMM_DEFAULT);
  }
  pxc_leave();
  return st == CUBLAS_STATUS_SUCCESS ? 0 : pxc_cublas_error(st, "matmul");
}
