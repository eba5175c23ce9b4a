/*
 * sync_open.c -- the module parx.c.sync: sync.c's primitives (mutex,
 * semaphore, barrier, waitgroup, atomic) and event.c's (event, condition)
 * in one table, whose `metatables` field the Lua face (lua/parx/sync.lua)
 * finishes and marks __parx_ready.  Its own file so that event.c, which
 * builds on sync.c's wait queue and mutex, is not called back by sync.c.
 */
#include "sync.h"

int px_open_sync(lua_State *L) {
  px_sync_open_primitives(L);
  px_sync_open_events(L);
  return 1;
}
