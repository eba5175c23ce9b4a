/*
 * gpu_cublas.c -- the peer for gpu.matmul: cuBLAS called directly, the same
 * calls parx makes (cublasGemmEx, 32 MiB workspace, one stream), on square
 * matrices of random data.
 *
 *   build/gpu_cublas_bench [sizes...]      default 1024 2048 4096 8192
 * Prints one line per (mode, size): "cublas MODE N MS TFLOPS", MS the
 * median over trials of the mean time per product, timed with CUDA events
 * after a warm-up.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                         \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)
#define CB(x)                                                                         \
  do {                                                                                \
    cublasStatus_t s_ = (x);                                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cublasGetStatusString(s_)); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

static uint16_t to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  x += 0x7FFFu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

/* Uniform [0,1) from a 64-bit LCG: random enough to keep the tensor cores
 * honest (zeros run faster than real data). */
static void fill_random(void *dev, size_t n, int bf16, uint64_t seed) {
  size_t es = bf16 ? 2 : 4;
  void *h = malloc(n * es);
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (size_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    float v = (float)(s >> 40) * (1.0f / 16777216.0f);
    if (bf16) ((uint16_t *)h)[i] = to_bf16(v);
    else ((float *)h)[i] = v;
  }
  CK(cudaMemcpy(dev, h, n * es, cudaMemcpyHostToDevice));
  free(h);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int sizes[16], nsizes = 0;
  for (int i = 1; i < argc && nsizes < 16; i++) sizes[nsizes++] = atoi(argv[i]);
  if (!nsizes) {
    int def[] = {1024, 2048, 4096, 8192};
    memcpy(sizes, def, sizeof def);
    nsizes = 4;
  }
  cudaStream_t stream;
  cublasHandle_t h;
  void *ws;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CB(cublasCreate(&h));
  CB(cublasSetStream(h, stream));
  CK(cudaMalloc(&ws, 32u << 20));
  CB(cublasSetWorkspace(h, ws, 32u << 20));
  struct cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("# device %s\n", prop.name);
  const char *modes[] = {"float32", "tf32", "bfloat16"};
  for (int mi = 0; mi < 3; mi++) {
    for (int si = 0; si < nsizes; si++) {
      int n = sizes[si], bf16 = mi == 2;
      size_t es = bf16 ? 2 : 4, count = (size_t)n * n;
      void *a, *b, *c;
      CK(cudaMalloc(&a, count * es));
      CK(cudaMalloc(&b, count * es));
      CK(cudaMalloc(&c, count * es));
      fill_random(a, count, bf16, 1);
      fill_random(b, count, bf16, 2);
      cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
      cublasComputeType_t compute = mi == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      float alpha = 1, beta = 0;
      double flops = 2.0 * n * (double)n * n;
      /* about 0.2 s of work a trial at the expected rate */
      double rate = mi == 0 ? 50e12 : 500e12;
      int reps = (int)(0.2 * rate / flops);
      if (reps < 3) reps = 3;
      if (reps > 2000) reps = 2000;
      for (int w = 0; w < 3; w++)
        CB(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, b, type, n, a, type, n,
                        &beta, c, type, n, compute, CUBLAS_GEMM_DEFAULT));
      CK(cudaStreamSynchronize(stream));
      cudaEvent_t e0, e1;
      CK(cudaEventCreate(&e0));
      CK(cudaEventCreate(&e1));
      double ms[5];
      for (int t = 0; t < 5; t++) {
        CK(cudaEventRecord(e0, stream));
        for (int r = 0; r < reps; r++)
          CB(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, b, type, n, a, type, n,
                          &beta, c, type, n, compute, CUBLAS_GEMM_DEFAULT));
        CK(cudaEventRecord(e1, stream));
        CK(cudaEventSynchronize(e1));
        float elapsed;
        CK(cudaEventElapsedTime(&elapsed, e0, e1));
        ms[t] = elapsed / reps;
      }
      qsort(ms, 5, sizeof ms[0], cmp);
      printf("cublas %s %d %.4f %.1f\n", modes[mi], n, ms[2], flops / (ms[2] * 1e-3) / 1e12);
      fflush(stdout);
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
      CK(cudaFree(a));
      CK(cudaFree(b));
      CK(cudaFree(c));
    }
  }
  cublasDestroy(h);
  return 0;
}
