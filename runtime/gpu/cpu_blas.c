/*
 * cpu_blas.c -- gpu.matmul without a GPU: OpenBLAS (px_blas_sgemm/dgemm, all
 * cores through OpenBLAS's own threads).  The half types go through float32
 * (exact widening; products accumulate in float32 as on the GPU) and round
 * back once.  Batches are a loop of single products: each one already uses
 * every core.
 */
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "platform/blas.h"

static void gemm_float(const pxc_gemm *g, const float *a, const float *b, float *c) {
  int lda = g->transa ? (int)g->m : (int)g->k, ldb = g->transb ? (int)g->k : (int)g->n;
  for (int64_t i = 0; i < g->batch; i++)
    px_blas_sgemm(CblasRowMajor, g->transa ? CblasTrans : CblasNoTrans,
                  g->transb ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k,
                  (float)g->alpha, a + i * g->stride_a, lda, b + i * g->stride_b, ldb,
                  (float)g->beta, c + i * g->stride_c, (int)g->n);
}

static void gemm_double(const pxc_gemm *g) {
  int lda = g->transa ? (int)g->m : (int)g->k, ldb = g->transb ? (int)g->k : (int)g->n;
  const double *a = g->a, *b = g->b;
  double *c = g->c;
  for (int64_t i = 0; i < g->batch; i++)
    px_blas_dgemm(CblasRowMajor, g->transa ? CblasTrans : CblasNoTrans,
                  g->transb ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k,
                  g->alpha, a + i * g->stride_a, lda, b + i * g->stride_b, ldb, g->beta,
                  c + i * g->stride_c, (int)g->n);
}

/* Elements that batch matrices of `stride` span (a stride of 0 is one). */
static int64_t span(int64_t batch, int64_t stride, int64_t one) {
  return stride == 0 ? one : (batch - 1) * stride + one;
}

int px_cpu_gemm(const pxc_gemm *g) {
  if (g->m == 0 || g->n == 0 || g->batch == 0) return 0;
  if (g->k == 0) {
    /* C = beta C; OpenBLAS rejects k = 0 with lda = 0. */
    int64_t count = span(g->batch, g->stride_c, g->m * g->n);
    if (g->beta == 0.0) px_cpu_fill(g->c, g->dtype, count, 0.0);
    else px_cpu_scale(g->c, g->c, g->beta, g->dtype, count);
    return 0;
  }
  if (g->dtype == PX_FLOAT64) {
    gemm_double(g);
    return 0;
  }
  if (g->dtype == PX_FLOAT32) {
    gemm_float(g, g->a, g->b, g->c);
    return 0;
  }
  int64_t na = span(g->batch, g->stride_a, g->m * g->k);
  int64_t nb = span(g->batch, g->stride_b, g->k * g->n);
  int64_t nc = span(g->batch, g->stride_c, g->m * g->n);
  float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb),
        *c = malloc(sizeof(float) * nc);
  if (!a || !b || !c) {
    free(a);
    free(b);
    free(c);
    return -1;
  }
  px_cpu_cast(a, PX_FLOAT32, g->a, g->dtype, na);
  px_cpu_cast(b, PX_FLOAT32, g->b, g->dtype, nb);
  if (g->beta != 0.0) px_cpu_cast(c, PX_FLOAT32, g->c, g->dtype, nc);
  else memset(c, 0, sizeof(float) * nc);
  gemm_float(g, a, b, c);
  px_cpu_cast(g->c, g->dtype, c, PX_FLOAT32, nc);
  free(a);
  free(b);
  free(c);
  return 0;
}
