/*
 * loader.c -- find build/parx_cuda.so, dlopen it, open the device.
 *
 * The parx binary never links CUDA: the module is looked up, in order, at
 *   $PARX_CUDA_MODULE,
 *   next to the binary or library that holds this code (dladdr of one of
 *     its symbols: build/parx and build/libparx.so find build/parx_cuda.so),
 *   ../lib/parx/ from there (an installed PREFIX/bin/parx finds
 *     PREFIX/lib/parx/parx_cuda.so),
 *   next to /proc/self/exe (a host program that links libparx.a).
 * A missing module, a missing driver or no device leaves the CPU path with
 * the reason recorded for gpu.available() and gpu.device().  $PARX_GPU=off
 * skips the GPU; $PARX_GPU=require makes its absence an error at use.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu.h"

static px_gpu_backend backend;
static pthread_once_t backend_once = PTHREAD_ONCE_INIT;

static int try_module(const char *path, char *why, size_t whylen) {
  if (access(path, R_OK) != 0) {
    snprintf(why, whylen, "%.400s: not found", path);
    return 0;
  }
  void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    snprintf(why, whylen, "%s", dlerror());
    return 0;
  }
  pxc_get_api_fn get = (pxc_get_api_fn)dlsym(handle, "pxc_get_api");
  const pxc_api *api = get ? get(PXC_ABI_VERSION) : NULL;
  if (!api) {
    snprintf(why, whylen, "%.400s: not a parx GPU module of ABI %d", path, PXC_ABI_VERSION);
    dlclose(handle);
    return 0;
  }
  snprintf(backend.module_path, sizeof backend.module_path, "%.4000s", path);
  if (api->init() != 0) {
    /* No driver or no device: the module stays loaded (unloading CUDA's
     * runtime mid-process is not safe) but unused. */
    snprintf(why, whylen, "%s", api->errmsg());
    return 1;
  }
  backend.cuda = api;
  return 1;
}

/* dir of `file` + "/" + rel into out. */
static void sibling(char *out, size_t len, const char *file, const char *rel) {
  char copy[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", file);
  snprintf(out, len, "%s/%s", dirname(copy), rel);
}

static void load(void) {
  const char *mode = getenv("PARX_GPU");
  backend.require = mode && strcmp(mode, "require") == 0;
  if (mode && (strcmp(mode, "off") == 0 || strcmp(mode, "0") == 0 || strcmp(mode, "cpu") == 0)) {
    snprintf(backend.reason, sizeof backend.reason, "disabled by PARX_GPU=%s", mode);
    return;
  }

  char candidates[4][PATH_MAX];
  int count = 0;
  const char *env = getenv("PARX_CUDA_MODULE");
  if (env && *env) snprintf(candidates[count++], PATH_MAX, "%s", env);
  Dl_info info;
  if (dladdr((void *)px_gpu_backend_get, &info) && info.dli_fname && info.dli_fname[0]) {
    char self[PATH_MAX];
    if (!realpath(info.dli_fname, self)) snprintf(self, sizeof self, "%s", info.dli_fname);
    sibling(candidates[count++], PATH_MAX, self, "parx_cuda.so");
    sibling(candidates[count++], PATH_MAX, self, "../lib/parx/parx_cuda.so");
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    sibling(candidates[count++], PATH_MAX, exe, "parx_cuda.so");
  }

  char why[512] = "", looked[1024] = "";
  int found = 0;
  for (int i = 0; i < count && !found; i++) {
    /* An explicit $PARX_CUDA_MODULE is the only candidate when given. */
    if (i > 0 && env && *env) break;
    int seen = 0;
    for (int j = 0; j < i; j++) seen |= strcmp(candidates[i], candidates[j]) == 0;
    if (seen) continue;
    if (access(candidates[i], R_OK) != 0) {
      size_t len = strlen(looked);
      snprintf(looked + len, sizeof looked - len, "%s%.300s", len ? ", " : "", candidates[i]);
      continue;
    }
    found = try_module(candidates[i], why, sizeof why);
  }
  if (!found && !why[0])
    snprintf(why, sizeof why, "no parx_cuda.so (built where nvcc is installed) at %.450s", looked);
  if (!backend.cuda) snprintf(backend.reason, sizeof backend.reason, "%s", why);
}

const px_gpu_backend *px_gpu_backend_get(void) {
  pthread_once(&backend_once, load);
  return &backend;
}

int px_gpu_code(int pxc_rc) {
  switch (pxc_rc) {
  case PXC_ENODEV: return PX_ENODEV;
  case PXC_ECUBLAS: return PX_ECUBLAS;
  case PXC_ENOMEM: return UV_ENOMEM;
  case PXC_EINVAL: return UV_EINVAL;
  default: return PX_ECUDA;
  }
}
