/* blas.h -- the OpenBLAS functions parx calls, under parx's own names.
 *
 * blas.c defines them and opens libopenblas.so.0 on first use.  They are
 * not called cblas_* so that libparx never defines a BLAS symbol: a host
 * or a Lua C module that links a BLAS of its own gets that one, and parx
 * keeps its (the same arguments as cblas.h's functions of the same name).
 */
#ifndef PX_PLATFORM_BLAS_H
#define PX_PLATFORM_BLAS_H

#include <cblas.h>

void px_blas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M,
                   blasint N, blasint K, float alpha, const float *A, blasint lda,
                   const float *B, blasint ldb, float beta, float *C, blasint ldc);
void px_blas_dgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M,
                   blasint N, blasint K, double alpha, const double *A, blasint lda,
                   const double *B, blasint ldb, double beta, double *C, blasint ldc);
/* openblas_get_num_threads(), or 1 with the fallback loop. */
int px_blas_threads(void);

#endif
