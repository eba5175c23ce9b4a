/*
 * nompi.c -- parx.mpi when parx is built without MPI (no OpenMPI headers
 * were found): requiring the module says how to get it; the command line's
 * hook has nothing to abort.
 */
#include "mpi.h"

int px_mpi_fatal(const char *msg, int status) {
  (void)msg;
  (void)status;
  return 0;
}

int px_open_mpi(lua_State *L) {
  return luaL_error(L, "parx.mpi: this parx was built without MPI: install OpenMPI "
                       "(libopenmpi-dev and openmpi-bin; `make deps` does) and rebuild");
}
