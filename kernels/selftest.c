/*
 * selftest.c -- checks build/parx_cuda.so without the parx runtime: every
 * kernel against its C equivalent (runtime/gpu/cpu_ops.c), bit for bit
 * where the arithmetic is the same, and the cuBLAS products against a naive
 * float64 reference within the documented tolerances (relative Frobenius
 * error: float64 1e-12, float32 1e-5, tf32 1e-3, half types 1e-2).  Fresh
 * random inputs each run; outputs poisoned with NaN first.  Also: out of
 * memory is an error with CUDA's message and the module stays usable.
 *
 *   build/parx_cuda_selftest build/parx_cuda.so [seed]
 * Exit status 0 when every check passed; 77 when there is no GPU.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/gpu/gpu.h"
#include "../runtime/gpu/numeric.h"

size_t px_dtype_size(int dtype) { return dtype == PX_FLOAT64 ? 8 : dtype == PX_FLOAT32 ? 4 : 2; }

static const pxc_api *api;
static int failures, checks;

#define CHECK(cond, ...)                                                                    \
  do {                                                                                      \
    checks++;                                                                               \
    if (!(cond)) {                                                                          \
      failures++;                                                                           \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                                           \
      printf(__VA_ARGS__);                                                                  \
      printf("\n");                                                                         \
    }                                                                                       \
  } while (0)

#define CALL(expr)                                                                          \
  do {                                                                                      \
    int rc_ = (expr);                                                                       \
    if (rc_) {                                                                              \
      printf("FAIL %s:%d: %s -> %d: %s\n", __FILE__, __LINE__, #expr, rc_, api->errmsg());  \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

static const int dtypes[4] = {PX_FLOAT16, PX_BFLOAT16, PX_FLOAT32, PX_FLOAT64};
static const char *names[12] = {[PX_FLOAT16] = "float16", [PX_BFLOAT16] = "bfloat16",
                                [PX_FLOAT32] = "float32", [PX_FLOAT64] = "float64"};

static double get(const void *p, int dtype, int64_t i) {
  switch (dtype) {
  case PX_FLOAT16: return px_half_to_float(((const uint16_t *)p)[i]);
  case PX_BFLOAT16: return px_bf16_to_float(((const uint16_t *)p)[i]);
  case PX_FLOAT32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}

static void *dev(size_t bytes) {
  void *p;
  CALL(api->alloc(&p, bytes));
  return p;
}

static void *fetch(const void *d, size_t bytes) {
  void *h = malloc(bytes);
  CALL(api->download(h, d, bytes));
  CALL(api->synchronize());
  return h;
}

static void check_elementwise(uint64_t seed) {
  const int64_t n = 1000003; /* odd: tails of every vector width */
  for (int t = 0; t < 4; t++) {
    int dt = dtypes[t];
    size_t bytes = n * px_dtype_size(dt);
    void *da = dev(bytes), *db = dev(bytes), *dc = dev(bytes);
    void *ha = malloc(bytes), *hb = malloc(bytes), *hc = malloc(bytes);
    for (int normal = 0; normal < 2; normal++) {
      CALL(api->rand(da, dt, n, seed + normal, normal));
      px_cpu_rand(ha, dt, n, seed + normal, normal);
      void *got = fetch(da, bytes);
      int64_t differ = 0;
      double maxdiff = 0;
      for (int64_t i = 0; i < n; i++) {
        double x = get(got, dt, i), y = get(ha, dt, i);
        if (x != y) differ++;
        if (fabs(x - y) > maxdiff) maxdiff = fabs(x - y);
      }
      /* uniform: identical.  normal: CUDA's log/sin/cos and libm's differ
       * in the last bit of a float64 now and then, which survives in
       * float64 results and, rarely, flips a rounding to the smaller
       * types. */
      int ok = !normal ? differ == 0
               : dt == PX_FLOAT64 ? maxdiff < 1e-13
                                  : differ < n / 10000 + 1 && maxdiff < 1e-2;
      CHECK(ok,
            "rand %s %s: %lld of %lld differ (max %g)", names[dt], normal ? "normal" : "uniform",
            (long long)differ, (long long)n, maxdiff);
      if (normal) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += get(got, dt, i);
        mean /= n;
        for (int64_t i = 0; i < n; i++) var += pow(get(got, dt, i) - mean, 2);
        var /= n;
        CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.02, "normal %s: mean %g var %g", names[dt],
              mean, var);
      } else {
        double lo = 1, hi = 0;
        for (int64_t i = 0; i < n; i++) {
          double v = get(got, dt, i);
          lo = v < lo ? v : lo;
          hi = v > hi ? v : hi;
        }
        CHECK(lo >= 0 && hi < 1 && hi > 0.99, "uniform %s range [%g, %g]", names[dt], lo, hi);
      }
      free(got);
    }
    /* b: normal numbers; a keeps the normal ones from the loop above */
    CALL(api->rand(db, dt, n, seed + 7, 1));
    px_cpu_rand(hb, dt, n, seed + 7, 1);
    CALL(api->upload(db, hb, bytes)); /* the CPU's copy, so inputs are identical */
    CALL(api->upload(da, ha, bytes));

    struct {
      const char *what;
      int kind;
    } ops[] = {{"add", 0}, {"mul", 1}, {"scale", 2}, {"fill", 3}};
    for (int o = 0; o < 4; o++) {
      CALL(api->fill(dc, dt, n, NAN));
      if (ops[o].kind < 2) {
        CALL(api->binary(ops[o].kind, dc, da, db, dt, n));
        px_cpu_binary(ops[o].kind, hc, ha, hb, dt, n);
      } else if (ops[o].kind == 2) {
        CALL(api->scale(dc, da, -2.7182818, dt, n));
        px_cpu_scale(hc, ha, -2.7182818, dt, n);
      } else {
        CALL(api->fill(dc, dt, n, 3.14159));
        px_cpu_fill(hc, dt, n, 3.14159);
      }
      void *got = fetch(dc, bytes);
      CHECK(memcmp(got, hc, bytes) == 0, "%s %s differs from the CPU", ops[o].what, names[dt]);
      free(got);
    }
    /* aliasing: a = a + b in place */
    CALL(api->binary(PXC_ADD, da, da, db, dt, n));
    px_cpu_binary(PXC_ADD, hc, ha, hb, dt, n);
    void *got = fetch(da, bytes);
    CHECK(memcmp(got, hc, bytes) == 0, "in-place add %s", names[dt]);
    free(got);
    CALL(api->upload(da, ha, bytes));

    for (int u = 0; u < 4; u++) {
      int dst = dtypes[u];
      size_t obytes = n * px_dtype_size(dst);
      void *dout = dev(obytes), *hout = malloc(obytes);
      CALL(api->fill(dout, dst, n, NAN));
      CALL(api->cast(dout, dst, da, dt, n));
      px_cpu_cast(hout, dst, ha, dt, n);
      void *g = fetch(dout, obytes);
      CHECK(memcmp(g, hout, obytes) == 0, "cast %s -> %s differs", names[dt], names[dst]);
      free(g);
      free(hout);
      api->free(dout);
    }

    double sum = 0;
    CALL(api->sum(da, dt, n, &sum));
    CALL(api->synchronize());
    double want = px_cpu_sum(ha, dt, n);
    CHECK(fabs(sum - want) <= 1e-9 * (fabs(want) + n), "sum %s: %.17g vs %.17g", names[dt], sum,
          want);
    CALL(api->sum(da, dt, 0, &sum));
    CALL(api->synchronize());
    CHECK(sum == 0, "sum of nothing is %g", sum);

    api->free(da);
    api->free(db);
    api->free(dc);
    free(ha);
    free(hb);
    free(hc);
  }
}

/* Naive float64 reference of one batch entry, row-major. */
static void reference(const pxc_gemm *g, const void *a, const void *b, const double *c0,
                      double *c, int64_t bi) {
  for (int64_t i = 0; i < g->m; i++)
    for (int64_t j = 0; j < g->n; j++) {
      double acc = 0;
      for (int64_t l = 0; l < g->k; l++) {
        int64_t ia = g->transa ? l * g->m + i : i * g->k + l;
        int64_t ib = g->transb ? j * g->k + l : l * g->n + j;
        acc += get(a, g->dtype, bi * g->stride_a + ia) * get(b, g->dtype, bi * g->stride_b + ib);
      }
      int64_t ic = bi * g->stride_c + i * g->n + j;
      c[ic] = g->alpha * acc + (c0 ? g->beta * c0[ic] : 0);
    }
}

static void check_gemm(uint64_t seed) {
  struct {
    int64_t m, n, k, batch;
    int transa, transb, shared_b;
    double alpha, beta;
  } cases[] = {
      {129, 257, 63, 1, 0, 0, 0, 1.0, 0.0}, {64, 48, 200, 1, 1, 0, 0, 1.0, 0.0},
      {65, 33, 17, 1, 0, 1, 0, 2.0, 0.0},   {40, 50, 60, 1, 1, 1, 0, 1.0, 0.5},
      {31, 47, 29, 3, 0, 0, 0, 1.0, 0.0},   {16, 24, 32, 4, 1, 0, 1, -1.5, 0.0},
      {7, 9, 0, 2, 0, 0, 0, 1.0, 0.25},     {256, 256, 256, 2, 0, 0, 0, 1.0, 0.0},
  };
  int ncases = sizeof cases / sizeof cases[0];
  for (int t = 0; t < 5; t++) {
    int dt = t < 4 ? dtypes[t] : PX_FLOAT32, tf32 = t == 4;
    double tol = dt == PX_FLOAT64 ? 1e-12 : tf32 ? 1e-3 : dt == PX_FLOAT32 ? 1e-5 : 1e-2;
    for (int ci = 0; ci < ncases; ci++) {
      pxc_gemm g = {0};
      g.dtype = dt;
      g.tf32 = tf32;
      g.transa = cases[ci].transa;
      g.transb = cases[ci].transb;
      g.m = cases[ci].m;
      g.n = cases[ci].n;
      g.k = cases[ci].k;
      g.batch = cases[ci].batch;
      g.alpha = cases[ci].alpha;
      g.beta = cases[ci].beta;
      g.stride_a = g.m * g.k;
      g.stride_b = cases[ci].shared_b ? 0 : g.k * g.n;
      g.stride_c = g.m * g.n;
      size_t es = px_dtype_size(dt);
      int64_t na = g.batch * g.m * g.k, nb = (cases[ci].shared_b ? 1 : g.batch) * g.k * g.n,
              nc = g.batch * g.m * g.n;
      void *ha = malloc(na * es + 8), *hb = malloc(nb * es + 8), *hc = malloc(nc * es + 8);
      px_cpu_rand(ha, dt, na, seed + 100 + ci, 1);
      px_cpu_rand(hb, dt, nb, seed + 200 + ci, 1);
      px_cpu_rand(hc, dt, nc, seed + 300 + ci, 1);
      double *c0 = malloc(sizeof(double) * nc + 8), *ref = malloc(sizeof(double) * nc + 8);
      for (int64_t i = 0; i < nc; i++) c0[i] = get(hc, dt, i);
      for (int64_t bi = 0; bi < g.batch; bi++)
        reference(&g, ha, hb, g.beta != 0 ? c0 : NULL, ref, bi);

      void *da = dev(na * es), *db = dev(nb * es), *dc = dev(nc * es);
      CALL(api->upload(da, ha, na * es));
      CALL(api->upload(db, hb, nb * es));
      if (g.beta != 0) CALL(api->upload(dc, hc, nc * es));
      else CALL(api->fill(dc, dt, nc, NAN));
      g.a = da;
      g.b = db;
      g.c = dc;
      CALL(api->gemm(&g));
      void *got = fetch(dc, nc * es);

      /* the CPU path on the same inputs */
      void *cpu = malloc(nc * es + 8);
      if (g.beta != 0) memcpy(cpu, hc, nc * es);
      else px_cpu_fill(cpu, dt, nc, NAN);
      pxc_gemm h = g;
      h.a = ha;
      h.b = hb;
      h.c = cpu;
      CHECK(px_cpu_gemm(&h) == 0, "cpu gemm failed");

      double err = 0, err_cpu = 0, norm = 0;
      for (int64_t i = 0; i < nc; i++) {
        double x = get(got, dt, i), y = get(cpu, dt, i);
        err += (x - ref[i]) * (x - ref[i]);
        err_cpu += (y - ref[i]) * (y - ref[i]);
        norm += ref[i] * ref[i];
      }
      double rel = sqrt(err / (norm > 0 ? norm : 1)), rel_cpu = sqrt(err_cpu / (norm > 0 ? norm : 1));
      CHECK(rel <= tol && rel == rel, "gemm %s%s case %d (%lldx%lldx%lld b%lld ta%d tb%d): "
            "rel error %g > %g", names[dt], tf32 ? " tf32" : "", ci, (long long)g.m,
            (long long)g.n, (long long)g.k, (long long)g.batch, g.transa, g.transb, rel, tol);
      CHECK(rel_cpu <= tol && rel_cpu == rel_cpu, "cpu gemm %s case %d: rel error %g > %g",
            names[dt], ci, rel_cpu, tol);
      free(got);
      free(cpu);
      free(ha);
      free(hb);
      free(hc);
      free(c0);
      free(ref);
      api->free(da);
      api->free(db);
      api->free(dc);
    }
  }
}

static void notified(void *arg) { *(int *)arg = 1; }

static void check_errors(void) {
  void *p = NULL;
  int rc = api->alloc(&p, (size_t)1 << 50); /* a petabyte */
  CHECK(rc == PXC_ENOMEM && p == NULL, "huge alloc: rc %d", rc);
  CHECK(strstr(api->errmsg(), "out of memory") != NULL, "message: %s", api->errmsg());
  printf("  out of memory reads: %s\n", api->errmsg());
  pxc_gemm bad = {0};
  bad.dtype = PX_INT32;
  bad.m = bad.n = bad.k = bad.batch = 1;
  CHECK(api->gemm(&bad) == PXC_EINVAL, "bad dtype accepted");
  CHECK(api->fill(NULL, PX_INT8, 10, 0) == PXC_EINVAL, "fill int8 accepted");
  /* still usable */
  void *d = dev(4096);
  CALL(api->fill(d, PX_FLOAT32, 1024, 1.0));
  double s = 0;
  CALL(api->sum(d, PX_FLOAT32, 1024, &s));
  int flag = 0;
  CALL(api->notify(notified, &flag));
  CALL(api->synchronize());
  CHECK(s == 1024 && flag == 1, "after errors: sum %g, notified %d", s, flag);
  CHECK(api->status() == 0, "status after recoverable errors");
  api->free(d);
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "build/parx_cuda.so";
  uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)time(NULL);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("cannot load %s: %s\n", path, dlerror());
    return 1;
  }
  pxc_get_api_fn get_api = (pxc_get_api_fn)dlsym(h, "pxc_get_api");
  api = get_api ? get_api(PXC_ABI_VERSION) : NULL;
  if (!api) {
    printf("%s: ABI mismatch\n", path);
    return 1;
  }
  if (api->init() != 0) {
    printf("SKIP: no GPU: %s\n", api->errmsg());
    return 77;
  }
  pxc_device_info info;
  CALL(api->device_info(&info));
  printf("parx_cuda selftest on %s (cc %d.%d, %d SMs, %.1f GiB), seed %llu\n", info.name,
         info.major, info.minor, info.sm_count, info.total_mem / 1073741824.0,
         (unsigned long long)seed);
  check_elementwise(seed);
  check_gemm(seed);
  check_errors();
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
