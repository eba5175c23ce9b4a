/* fatal.h -- the one function of parx.mpi that the command line calls. */
#ifndef PX_MPI_FATAL_H
#define PX_MPI_FATAL_H

/* The report of an uncaught error.  When this process has initialised MPI,
 * prints "[rank r@host] msg" on stderr, flushes, and aborts the whole job
 * with MPI_Abort (it does not return).  Otherwise returns 0 and the caller
 * reports the error as usual. */
int px_mpi_fatal(const char *msg, int status);

#endif
