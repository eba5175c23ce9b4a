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
#include <string.h>

#include "../platform/dl.h"
#include "mpi.h"

/* OpenMPI 4.x's soname (Debian's libopenmpi3 ships libmpi.so.40). */
#define LIBMPI "libmpi.so.40"

static px_mpi_lib lib;
static const char *load_error;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
  /* mpi.h's MPI_COMM_WORLD, MPI_BYTE, MPI_ERRORS_RETURN, MPI_INT8_T ..
   * MPI_DOUBLE and MPI_SUM .. MPI_MAX are these globals' addresses. */
  static const px_dl_sym syms[] = {
#define XX(name, params) {"MPI_" #name, (void **)&lib.name},
      PX_MPI_FUNCS(XX)
#undef XX
      {"ompi_mpi_comm_world", (void **)&lib.world},
      {"ompi_mpi_byte", (void **)&lib.byte},
      {"ompi_mpi_errors_return", (void **)&lib.errors_return},
      {"ompi_mpi_int8_t", (void **)&lib.dtype[PX_INT8]},
      {"ompi_mpi_int16_t", (void **)&lib.dtype[PX_INT16]},
      {"ompi_mpi_int32_t", (void **)&lib.dtype[PX_INT32]},
      {"ompi_mpi_int64_t", (void **)&lib.dtype[PX_INT64]},
      {"ompi_mpi_uint8_t", (void **)&lib.dtype[PX_UINT8]},
      {"ompi_mpi_uint16_t", (void **)&lib.dtype[PX_UINT16]},
      {"ompi_mpi_uint32_t", (void **)&lib.dtype[PX_UINT32]},
      {"ompi_mpi_uint64_t", (void **)&lib.dtype[PX_UINT64]},
      {"ompi_mpi_float", (void **)&lib.dtype[PX_FLOAT32]},
      {"ompi_mpi_double", (void **)&lib.dtype[PX_FLOAT64]},
      {"ompi_mpi_op_sum", (void **)&lib.op[PX_OP_SUM]},
      {"ompi_mpi_op_prod", (void **)&lib.op[PX_OP_PROD]},
      {"ompi_mpi_op_min", (void **)&lib.op[PX_OP_MIN]},
      {"ompi_mpi_op_max", (void **)&lib.op[PX_OP_MAX]},
      {NULL, NULL}};
  char err[256];
  void *h = px_dl_open(LIBMPI, RTLD_GLOBAL, syms, err, sizeof err);
  if (!h && strstr(err, " has no "))
    load_error = LIBMPI " lacks a function parx needs (not OpenMPI 4?)";
  else if (!h)
    load_error = "cannot load " LIBMPI " (OpenMPI 4): install openmpi-bin and libopenmpi3";
}

const px_mpi_lib *px_mpi_lib_load(const char **err) {
  pthread_once(&once, load);
  if (load_error) {
    *err = load_error;
    return NULL;
  }
  return &lib;
}
