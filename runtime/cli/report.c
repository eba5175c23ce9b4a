/*
 * report.c -- what the command line prints about itself: the version line
 * and failed parx_* results.  Shared by main.c and repl.c, so that neither
 * calls into the other but main.c into repl.c (the layering check flags
 * call cycles between files).
 */
#include <stdio.h>

#include <luajit.h>
#include <uv.h>

#include "cli.h"
#include "../mpi/fatal.h"

void px_cli_version(FILE *f) {
  fprintf(f, "parx %s (%s, libuv %s)\n", PARX_VERSION, LUAJIT_VERSION,
          uv_version_string());
}

void px_cli_report(parx_runtime *rt, int result) {
  const char *msg = NULL;
  if (result == PARX_ERRMEM)
    msg = "not enough memory";
  else
    msg = parx_last_error(rt);
  if (msg == NULL || *msg == '\0') msg = "unknown error";
  px_mpi_fatal(msg, 1); /* a rank of an MPI job: reports and aborts the job */
  fprintf(stderr, "parx: %s\n", msg);
  fflush(stderr);
}
