/*
 * dispatch.h -- fired sources and the dispatcher task: what timers
 * (timer.c) and signal handlers (signal.c) share.
 *
 * A timer's or a signal handler's callback is Lua code that must run in a
 * task, but a libuv callback may not call Lua.  So the libuv callback puts
 * the source that fired on its module's fired queue (px_dispatcher_fire)
 * and wakes the module's dispatcher: one task per module and VM, started by
 * the Lua layer (lua/parx/dispatch.lua) while sources are active, which
 * takes the ids of fired sources off the queue (next(), poll()) and runs
 * their callbacks as tasks.  next() parks only while sources are active and
 * none has fired, and returns nil once none is active, so the dispatcher
 * never keeps a script alive nor looks like a deadlock.
 *
 * A source that fires again while still queued stays queued once: the
 * firings merge (a repeating timer's missed ticks, repeated signals).
 */
#ifndef PX_IO_DISPATCH_H
#define PX_IO_DISPATCH_H

#include "../core/ioreq.h"

typedef struct px_source {
  px_queue fired; /* on the dispatcher's fired queue while linked */
  double id;      /* the Lua layer's key for the callback */
} px_source;

typedef struct px_dispatcher {
  px_queue fired; /* px_source.fired: fired, not yet taken */
  long active;    /* sources that may still fire */
  double next_id;
  px_req req;     /* the dispatcher task's park */
  const char *what;
  /* Push what the Lua layer gets for a taken source: its id first. */
  int (*push)(lua_State *L, px_source *src);
} px_dispatcher;

void px_dispatcher_init(px_dispatcher *d, const char *what,
                        int (*push)(lua_State *L, px_source *src));

/* Open a module whose functions share one per-VM state that starts with a
 * px_dispatcher (timer_vm, signal_vm): pushes the module table holding
 * funcs plus next() and poll() (below), each with upvalue 1 a userdata that points at the state (size
 * bytes, zeroed, its dispatcher initialised), whose __gc is gc (the VM is
 * closing; it must not assume the sources are gone).  Returns the state. */
px_dispatcher *px_dispatcher_open(lua_State *L, size_t size, const char *what,
                                  int (*push)(lua_State *L, px_source *src),
                                  const luaL_Reg *funcs, lua_CFunction gc);
/* In one of those functions: the state. */
static inline px_dispatcher *px_dispatcher_state(lua_State *L) {
  return *(px_dispatcher **)lua_touserdata(L, lua_upvalueindex(1));
}
/* A new source of d, with a fresh id; not active yet. */
void px_source_init(px_dispatcher *d, px_source *src);

/* Wake the dispatcher if it has work or nothing is left to wait for: call
 * after queueing or after d->active went down. */
static inline void px_dispatcher_poke(px_dispatcher *d) {
  if (!px_req_active(&d->req)) return;
  if (px_queue_empty(&d->fired) && d->active > 0) return;
  px_req_done(&d->req);
}

/* src fired: queue it (once).  A callback that fires several sources
 * queues them all, then pokes once. */
static inline void px_dispatcher_queue(px_dispatcher *d, px_source *src) {
  if (!px_queue_linked(&src->fired)) px_queue_insert_tail(&d->fired, &src->fired);
}

/* src fired: queue it and wake the dispatcher. */
static inline void px_dispatcher_fire(px_dispatcher *d, px_source *src) {
  px_dispatcher_queue(d, src);
  px_dispatcher_poke(d);
}

/* Drop src's queued firing, if any (stopped, collected). */
static inline void px_dispatcher_unqueue(px_source *src) {
  if (px_queue_linked(&src->fired)) px_queue_remove(&src->fired);
}

/* Lua: next() -> id, ... | false | nil.  The next fired source (what push
 * gives), false when none but sources are active, nil when none is
 * active.  Parks only while sources are active and none has fired. */
int px_dispatcher_next(lua_State *L, px_dispatcher *d);
/* Lua: poll() -> like next() but never parks. */
int px_dispatcher_poll(lua_State *L, px_dispatcher *d);

#endif
