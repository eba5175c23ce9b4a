/* signals.h -- signal names shared by signal.c and process.c. */
#ifndef PX_IO_SIGNALS_H
#define PX_IO_SIGNALS_H

#include "../core/px.h"

/* The signal number for a name ("int", "INT", "sigint", "SIGINT") or a
 * number at idx; raises a Lua argument error for anything else.  When the
 * value is absent, returns dflt (raises if dflt is 0). */
int px_signal_check(lua_State *L, int idx, int dflt);

/* Short lower-case name ("int", "term", ...) of signum, or NULL. */
const char *px_signal_name(int signum);

#endif
