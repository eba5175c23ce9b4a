/* sched_lj.c -- the scheduler's one use of LuaJIT internals: holding off
 * GC steps while a wait's deliver() pushes the results for a parked task.
 *
 * Why: deliver() runs on the VM's main state, where the scheduler has no
 * protected frame, so an error thrown while it pushes (a failing __gc run
 * by a GC step that one of the allocations triggered) would reach the
 * panic handler.  A protected call per wake (px_sched_protect) costs
 * about 450 instructions, which the channel ping-pong cannot afford; with
 * GC steps held off, no finaliser can run during deliver(), and the GC
 * catches up at the task's next allocation, inside its resume, where an
 * error is the task's own.
 * Running out of memory there is still unprotected (a known limit).
 *
 * How: LuaJIT starts a GC step when gc.total reaches gc.threshold, and
 * lua_gc(LUA_GCSTOP) is nothing but "threshold = LJ_MAX_MEM".  The main
 * lua_State lives inside LuaJIT's GG_State just before global_State, whose
 * GCState starts {total, threshold}.  The probe finds the threshold word
 * near the main state as the one word LUA_GCSTOP changes, checks that the
 * word before it is gc.total, and puts it back.  When the probe fails (a
 * different LuaJIT), or PARX_NO_LJ_GC is set (to run the specs that way),
 * px_sched_deliver uses the protected call instead.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define PROBE_WORDS 64

uint64_t *px_sched_lj_threshold(lua_State *L, uint64_t *stopped) {
  if (getenv("PARX_NO_LJ_GC")) return NULL;
  if (lua_pushthread(L) != 1) { /* must be the main state */
    lua_pop(L, 1);
    return NULL;
  }
  lua_pop(L, 1);
  uint64_t *base = (uint64_t *)(void *)L;
  uint64_t before[PROBE_WORDS];
  memcpy(before, base, sizeof before);
  uint64_t total = (uint64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024u + (uint64_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_gc(L, LUA_GCSTOP, 0);
  int found = -1, changed = 0;
  for (int i = 1; i < PROBE_WORDS; i++) {
    if (base[i] == before[i]) continue;
    changed++;
    if (base[i - 1] == total && base[i] >= ((uint64_t)1 << 31)) found = i;
  }
  if (found < 0 || changed != 1) {
    /* Not the layout we know: undo what LUA_GCSTOP did as the API can. */
    if (found >= 0) base[found] = before[found];
    else lua_gc(L, LUA_GCRESTART, -1);
    return NULL;
  }
  *stopped = base[found];
  base[found] = before[found];
  return &base[found];
}
