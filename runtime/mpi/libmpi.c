/*
 * libmpi.c -- OpenMPI, opened with dlopen the first time parx.mpi is used.
 *
 * Linking libmpi maps OpenMPI, its runtime (open-rte, open-pal), hwloc and
 * libevent into every process, and `parx -e ''` would pay for it.  So the
 * functions parx.mpi calls are looked up once, and so are the predefined
 * handles (MPI_COMM_WORLD, MPI_BYTE, MPI_ERRORS_RETURN), which OpenMPI's
 * mpi.h defines as the addresses of its own globals: the code never names
 * those macros, or the link would need libmpi.
 *
 * RTLD_GLOBAL: OpenMPI loads its components (transports, the process
 * manager) as plugins that resolve libmpi's and open-pal's symbols
 * globally; opened RTLD_LOCAL they fail to load (OpenMPI's FAQ on dlopen).
 */
#define PX_MPI_INTERNAL 1
#include <dlfcn.h>
#include <pthread.h>

#include "mpi.h"

/* OpenMPI 4.x's soname (Debian's libopenmpi3 ships libmpi.so.40). */
#define LIBMPI "libmpi.so.40"

static px_mpi_lib lib;
static const char *load_error;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
  void *h = dlopen(LIBMPI, RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    load_error = "cannot load " LIBMPI " (OpenMPI 4): install openmpi-bin and libopenmpi3";
    return;
  }
  int ok = 1;
#define XX(name, params) ok &= (*(void **)&lib.name = dlsym(h, "MPI_" #name)) != NULL;
  PX_MPI_FUNCS(XX)
#undef XX
  ok &= (lib.world = dlsym(h, "ompi_mpi_comm_world")) != NULL;
  ok &= (lib.byte = dlsym(h, "ompi_mpi_byte")) != NULL;
  ok &= (lib.errors_return = dlsym(h, "ompi_mpi_errors_return")) != NULL;
  /* The handles of MPI's allreduce: mpi.h's MPI_INT8_T .. MPI_DOUBLE and
   * MPI_SUM .. MPI_MAX are these globals' addresses. */
  static const char *const types[PX_NDTYPES] = {
    [PX_INT8] = "ompi_mpi_int8_t",   [PX_INT16] = "ompi_mpi_int16_t",
    [PX_INT32] = "ompi_mpi_int32_t", [PX_INT64] = "ompi_mpi_int64_t",
    [PX_UINT8] = "ompi_mpi_uint8_t", [PX_UINT16] = "ompi_mpi_uint16_t",
    [PX_UINT32] = "ompi_mpi_uint32_t", [PX_UINT64] = "ompi_mpi_uint64_t",
    [PX_FLOAT32] = "ompi_mpi_float", [PX_FLOAT64] = "ompi_mpi_double"};
  for (int i = 0; i < PX_NDTYPES; i++)
    if (types[i]) ok &= (lib.dtype[i] = dlsym(h, types[i])) != NULL;
  lib.int64 = lib.dtype[PX_INT64];
  static const char *const ops[4] = {"ompi_mpi_op_sum", "ompi_mpi_op_prod", "ompi_mpi_op_min",
                                     "ompi_mpi_op_max"};
  for (int i = 0; i < 4; i++) ok &= (lib.op[i] = dlsym(h, ops[i])) != NULL;
  if (!ok) load_error = LIBMPI " lacks a function parx needs (not OpenMPI 4?)";
}

const px_mpi_lib *px_mpi_lib_load(const char **err) {
  pthread_once(&once, load);
  if (load_error) {
    *err = load_error;
    return NULL;
  }
  return &lib;
}
