/*
 * stubs.c -- what the fuzz target links instead of the rest of the runtime:
 * its lua_State is not a parx VM (paths.c then does nothing).
 */
#include "core.h"

__thread px_trace *px_trace_self; /* core/trace.c's: no VM records here */

px_vm *px_vm_of(lua_State *L) {
  (void)L;
  return NULL;
}
