/*
 * sync.h -- the wait queue shared by the sync primitives (sync.c: mutex,
 * semaphore, barrier, waitgroup; event.c: event, condition).  Private to
 * runtime/mod.
 *
 * Every waiting primitive is one px_sync: a lock, a FIFO of parked
 * waiters and a few counters, with rules per kind.  Whoever satisfies a
 * waiter unlinks it (px_sync_grant_first) under the lock and wakes it
 * (px_sync_wake_all) after releasing the lock.
 */
#ifndef PX_MOD_SYNC_H
#define PX_MOD_SYNC_H

#include "../core/px.h"
#include "../core/queue.h"

enum { K_MUTEX, K_SEMAPHORE, K_BARRIER, K_WAITGROUP, K_EVENT, K_COND };

typedef struct swaiter swaiter;
typedef struct px_sync px_sync;

struct swaiter {
  px_wait w;              /* first: the scheduler's record */
  px_queue link;          /* in obj's queue while linked (px_queue_linked);
                             guarded by obj->lock */
  swaiter *wake_next;     /* the waker's local list */
  px_sync *obj;           /* one reference while parked */
  long value;             /* barrier: this party's arrival number;
                             semaphore: the permits it waits for */
  int has_timer;          /* event, condition: a wait with a timeout */
  int timed_out;          /* set by the timer (VM thread), read by deliver */
  uv_timer_t timer;       /* on the waiting task's loop; the waiter is
                             freed in its close callback */
};

struct px_sync {
  px_shared hdr;          /* first: shared-object header */
  pthread_mutex_t lock;   /* guards everything below */
  int kind;
  px_queue waiters;       /* swaiter.link, first come first */
  void *owner;            /* mutex: the holding task (or coroutine) */
  long count;             /* semaphore permits, waitgroup counter,
                             barrier arrivals in this round, event flag */
  long parties;           /* barrier */
  px_sync *mutex;         /* condition: its mutex (one reference) */
};

/* The object at stack index 1 if it is of `type` (methods are closures
 * whose upvalue 1 is the type's metatable), or raise. */
px_sync *px_sync_check(lua_State *L, const px_shared_type *type);
/* Push a new object of `type` and `kind`. */
px_sync *px_sync_new(lua_State *L, const px_shared_type *type, int kind, long count, long parties);
/* The px_shared_type push for every sync object: loads parx.sync first. */
void px_sync_push(lua_State *L, px_shared *obj);
void px_sync_free(px_shared *obj);
/* The same for any module whose Lua face `module` finishes its metatable
 * and sets __parx_ready on it (parx.dict too). */
void px_sync_push_face(lua_State *L, px_shared *obj, const char *module);
/* Register n types and make their metatables (methods[k] as closures over
 * the metatable, __tostring) into the table on top of L, under names[k]. */
void px_sync_add_types(lua_State *L, px_shared_type *types, const luaL_Reg *const *methods,
                       const char *const *names, int n, lua_CFunction tostring);

/* The first waiter in s's queue, or NULL (lock held). */
static inline swaiter *px_sync_first(px_sync *s) {
  if (px_queue_empty(&s->waiters)) return NULL;
  return px_container_of(px_queue_head(&s->waiters), swaiter, link);
}
/* Set up s's lock and empty queue (s zeroed). */
void px_sync_init(px_sync *s, const px_shared_type *type, int kind);
void px_sync_enqueue(px_sync *s, swaiter *w);                  /* lock held */
swaiter *px_sync_grant_first(px_sync *s, swaiter **wake);      /* lock held */
void px_sync_wake_all(swaiter *list);                          /* no lock */
/* A waiter for L's task, prepared; raises (nothing allocated) if L
 * cannot park. */
swaiter *px_sync_new_waiter(lua_State *L, px_sync *s, const char *what);
void px_sync_waiter_free(swaiter *w);
/* Park on w (already queued).  timeout_ms: UINT64_MAX waits forever;
 * otherwise a timer on L's loop unqueues w when it fires and the wait
 * returns false (true when woken: event and condition deliver a boolean). */
int px_sync_park(lua_State *L, swaiter *w, uint64_t timeout_ms);
/* The identity that owns a mutex: the current task (or coroutine). */
void *px_sync_owner(lua_State *L);
/* Lock mutex m for L's task (parks); raises if the task holds it. */
int px_sync_mutex_lock(lua_State *L, px_sync *m);
/* Unlock m held by `me`, handing it to the next waiter; 0, or -1 when
 * m is not locked, -2 when another task holds it. */
int px_sync_mutex_unlock(px_sync *m, void *me);

/* sync.c: push parx.c.sync's table with mutex, semaphore, barrier,
 * waitgroup and atomic (sync_open.c's px_open_sync adds the rest). */
void px_sync_open_primitives(lua_State *L);

/* event.c: add parx.event and parx.condition to parx.c.sync (the module
 * table on top of L; its `metatables` field gets theirs). */
void px_sync_open_events(lua_State *L);

#endif
