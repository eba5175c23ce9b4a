/* blas.c -- OpenBLAS, loaded on first use.
 *
 * OpenBLAS starts its thread pool when it is loaded; linking it would make
 * every `parx -e ''` pay for that (and map libgfortran).  The CPU path of
 * gpu.matmul calls px_blas_* (blas.h: cblas.h's arguments under parx's
 * names, so that libparx exports no BLAS symbol), which open the library
 * the first time.  If it cannot be opened, a plain C loop gives the same
 * results slowly, after one warning on stderr.
 */
#include "blas.h"
#include "dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static struct {
  void (*sgemm)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint,
                float, const float *, blasint, const float *, blasint, float, float *, blasint);
  void (*dgemm)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint,
                double, const double *, blasint, const double *, blasint, double, double *,
                blasint);
  int (*threads)(void);
} lib;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
  static const px_dl_sym syms[] = {{"cblas_sgemm", (void **)&lib.sgemm},
                                   {"cblas_dgemm", (void **)&lib.dgemm},
                                   {"openblas_get_num_threads", (void **)&lib.threads},
                                   {NULL, NULL}};
  char err[256];
  if (!px_dl_open("libopenblas.so.0", RTLD_LOCAL, syms, err, sizeof err))
    fprintf(stderr, "parx: libopenblas.so.0 not found (%s); CPU matmul uses a slow fallback\n", err);
}

/* Row-major C = alpha * op(A) op(B) + beta * C, the unoptimised way. */
#define NAIVE(T)                                                                \
  for (blasint i = 0; i < M; i++)                                              \
    for (blasint j = 0; j < N; j++) {                                          \
      double acc = 0;                                                          \
      for (blasint k = 0; k < K; k++) {                                        \
        T a = ta == CblasNoTrans ? A[i * lda + k] : A[k * lda + i];            \
        T b = tb == CblasNoTrans ? B[k * ldb + j] : B[j * ldb + k];            \
        acc += (double)a * (double)b;                                          \
      }                                                                        \
      C[i * ldc + j] = (T)(alpha * acc + (beta == 0 ? 0 : beta * C[i * ldc + j])); \
    }

/* px_blas_sgemm and px_blas_dgemm: OpenBLAS's function when it was found,
 * else the loop above, for the element type T. */
#define GEMM(name, T, fn)                                                       \
  void name(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, \
            blasint K, T alpha, const T *A, blasint lda, const T *B, blasint ldb, T beta, \
            T *C, blasint ldc) {                                               \
    pthread_once(&once, load);                                                 \
    if (lib.fn) {                                                              \
      lib.fn(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);     \
      return;                                                                  \
    }                                                                          \
    NAIVE(T)                                                                   \
  }
GEMM(px_blas_sgemm, float, sgemm)
GEMM(px_blas_dgemm, double, dgemm)
#undef GEMM

int px_blas_threads(void) {
  pthread_once(&once, load);
  return lib.threads ? lib.threads() : 1;
}
