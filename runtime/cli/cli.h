/* cli.h -- what main.c and repl.c share.  Not part of libparx. */
#ifndef PX_CLI_H
#define PX_CLI_H

#include <stdio.h>

#include "parx.h"

/* report.c: print the version line ("parx 0.1.0 (LuaJIT ..., libuv ...)") to f. */
void px_cli_version(FILE *f);

/* Report a failed parx_* result on stderr as "parx: message". */
void px_cli_report(parx_runtime *rt, int result);

/* repl.c: run the interactive loop until the user leaves (Ctrl-D, end of input) or
 * the code calls os.exit.  Reads with libedit when standard input is a
 * terminal, plain lines otherwise.  Returns -1 when the user left, or the
 * exit status that os.exit asked for. */
int px_repl_run(parx_runtime *rt);

/* Load the REPL's Lua half now, before -e, -l and the script run: its
 * module takes the standard functions it uses when it loads, and user code
 * may replace them.  0, or -1 with the reason on stderr. */
int px_repl_load(parx_runtime *rt);

/* exit.c: catch SIGINT, SIGTERM and SIGHUP (those at their default) so
 * that stdout and stderr are flushed before the process dies by them. */
void px_cli_signals_init(void);
/* Close the runtime on the way out with status: waits briefly for the
 * workers, and when some are still busy (a JIT-compiled loop) flushes
 * every stream and ends the process with _exit(status) at once.  Returns
 * only when everything was closed. */
void px_cli_exit(parx_runtime *rt, int status);

#endif
