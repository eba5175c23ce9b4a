/* cli.h -- what main.c and repl.c share.  Not part of libparx. */
#ifndef PX_CLI_H
#define PX_CLI_H

#include <stdio.h>

#include "parx.h"

/* Print the version line ("parx 0.1.0 (LuaJIT ..., libuv ...)") to f. */
void px_cli_version(FILE *f);

/* Report a failed parx_* result on stderr as "parx: message". */
void px_cli_report(parx_runtime *rt, int result);

/* Run the interactive loop until the user leaves (Ctrl-D, end of input) or
 * the code calls os.exit.  Reads with libedit when standard input is a
 * terminal, plain lines otherwise.  Returns -1 when the user left, or the
 * exit status that os.exit asked for. */
int px_repl_run(parx_runtime *rt);

#endif
