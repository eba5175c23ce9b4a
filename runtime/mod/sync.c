/*
 * sync.c -- parx.mutex, parx.semaphore, parx.barrier, parx.waitgroup and
 * parx.atomic: shared objects usable from every VM that park tasks, never
 * threads.
 *
 * The four waiting primitives are one px_sync object (a lock, a FIFO of
 * parked waiters and a few counters) with different rules.  Whoever
 * satisfies a waiter unlinks it and grants it what it waited for (the
 * mutex, a permit, a barrier release) under the lock, and px_wake()s it
 * after releasing the lock; so wake-ups hand things over directly, without
 * a retry loop and without letting a newcomer barge past a parked task
 * (FIFO fairness, as in Go's starving mutex mode).
 *
 * A task cancelled while parked: if its waiter is still queued, it leaves
 * the queue (a barrier party un-arrives); if it was already granted (the
 * wake is on its way), what it was granted is passed on in discard().
 *
 * parx.atomic is a lock-free int64 (C11 atomics).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/scalar.h"
#include "sync.h"

/* kind: what its values come out as: AT_NUMBER (made from a number: a Lua
 * number while |v| <= 2^53, an int64_t cdata beyond, so nothing is ever
 * rounded), AT_INT64 or AT_UINT64 (made from 1LL or 1ULL: that cdata). */
enum { AT_NUMBER, AT_INT64, AT_UINT64 };
typedef struct px_atomic {
  px_shared hdr;
  _Atomic int64_t value;
  int kind;
} px_atomic;

void px_sync_free(px_shared *obj) {
  px_sync *s = (px_sync *)obj;
  if (s->mutex) px_shared_release(&s->mutex->hdr);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static void atomic_free(px_shared *obj) { free(obj); }

static px_shared_type types[] = {
  {"parx.mutex", px_sync_free, px_sync_push, 0},
  {"parx.semaphore", px_sync_free, px_sync_push, 0},
  {"parx.barrier", px_sync_free, px_sync_push, 0},
  {"parx.waitgroup", px_sync_free, px_sync_push, 0},
  {"parx.atomic", atomic_free, px_sync_push, 0},
};
#define T_ATOMIC 4

/* Objects arriving through the marshaller in a VM that never loaded their
 * Lua face (`module`): load it (it installs the methods), then push the
 * proxy. */
void px_sync_push_face(lua_State *L, px_shared *obj, const char *module) {
  luaL_getmetatable(L, obj->type->name);
  int ready = 0;
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "__parx_ready");
    ready = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!ready) {
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1);
  }
  px_shared_push(L, obj);
}

void px_sync_push(lua_State *L, px_shared *obj) { px_sync_push_face(L, obj, "parx.sync"); }

/* Methods are closures with the metatable as upvalue 1: one comparison. */
static px_shared *check_obj(lua_State *L, const px_shared_type *type) {
  void *p = lua_touserdata(L, 1);
  if (p && lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same && *(px_shared **)p) return *(px_shared **)p;
  }
  return px_shared_check(L, 1, type);
}

px_sync *px_sync_check(lua_State *L, const px_shared_type *type) {
  return (px_sync *)check_obj(L, type);
}

static px_sync *check_sync(lua_State *L, int kind) { return px_sync_check(L, &types[kind]); }

/* ---- the wait queue ---------------------------------------------------- */

void px_sync_enqueue(px_sync *s, swaiter *w) { px_queue_insert_tail(&s->waiters, &w->link); }

/* Pop the first waiter onto the wake list (lock held). */
swaiter *px_sync_grant_first(px_sync *s, swaiter **wake) {
  swaiter *w = px_sync_first(s);
  if (!w) return NULL;
  px_queue_remove(&w->link);
  w->wake_next = *wake;
  *wake = w;
  return w;
}

void px_sync_wake_all(swaiter *list) {
  while (list) {
    swaiter *next = list->wake_next; /* list is freed once delivered */
    px_wake(&list->w);
    list = next;
  }
}

static void timer_closed(uv_handle_t *h) {
  swaiter *w = h->data;
  px_shared_release(&w->obj->hdr);
  free(w);
}

/* On the waiting task's VM thread whenever the waiter parked with a timer
 * (deliver, discard and cancel run there). */
void px_sync_waiter_free(swaiter *w) {
  if (w->has_timer) {
    w->timer.data = w;
    uv_close((uv_handle_t *)&w->timer, timer_closed);
    return;
  }
  px_shared_release(&w->obj->hdr);
  free(w);
}

/* Hand permits to the waiters at the head of a semaphore's queue while
 * there are enough for the first one (lock held).  FIFO: a waiter that
 * wants more permits than are free holds back the smaller requests behind
 * it, so a large acquire(n) cannot starve (as Go's semaphore.Weighted). */
static void sem_grant(px_sync *s, swaiter **wake) {
  for (swaiter *w; (w = px_sync_first(s)) && s->count >= w->value;) {
    s->count -= w->value;
    px_sync_grant_first(s, wake);
  }
}

/* Pass on what a cancelled waiter was granted (lock held). */
static void pass_on(px_sync *s, swaiter **wake) {
  if (s->kind == K_MUTEX) {
    swaiter *next = px_sync_grant_first(s, wake);
    s->owner = next ? (void *)next->w.task : NULL;
  } else if (s->kind == K_COND) {
    px_sync_grant_first(s, wake); /* a notify is not lost on it */
  }
  /* semaphore: the caller gives the permits back (sem_grant);
   * barrier, waitgroup, event: nothing was taken */
}

static int w_deliver(lua_State *co, px_wait *pw) {
  swaiter *w = (swaiter *)pw;
  int n = 0;
  if (w->obj->kind == K_BARRIER) {
    lua_pushinteger(co, w->value);
    n = 1;
  } else if (w->obj->kind >= K_EVENT) {
    lua_pushboolean(co, !w->timed_out);
    n = 1;
  }
  px_sync_waiter_free(w);
  return n;
}

static void w_discard(px_wait *pw) {
  swaiter *w = (swaiter *)pw;
  px_sync *s = w->obj;
  swaiter *wake = NULL;
  pthread_mutex_lock(&s->lock);
  if (w->timed_out) {
    /* the timer unqueued it: it was granted nothing */
  } else if (s->kind == K_SEMAPHORE) {
    s->count += w->value; /* the permits it was granted */
    sem_grant(s, &wake);
  } else {
    pass_on(s, &wake);
  }
  pthread_mutex_unlock(&s->lock);
  px_sync_wake_all(wake);
  px_sync_waiter_free(w);
}

static int w_cancel(px_wait *pw) {
  swaiter *w = (swaiter *)pw;
  px_sync *s = w->obj;
  pthread_mutex_lock(&s->lock);
  if (!px_queue_linked(&w->link)) {
    pthread_mutex_unlock(&s->lock);
    return 0; /* granted or timed out: the wake is on its way, discard()
                 passes on what was granted */
  }
  px_queue_remove(&w->link);
  if (s->kind == K_BARRIER) s->count--; /* this party leaves the round */
  /* A large request leaving the head may let smaller ones behind it go. */
  swaiter *wake = NULL;
  if (s->kind == K_SEMAPHORE) sem_grant(s, &wake);
  pthread_mutex_unlock(&s->lock);
  px_sync_wake_all(wake);
  px_sync_waiter_free(w);
  return 1;
}

static void timer_fired(uv_timer_t *t) {
  swaiter *w = t->data;
  px_sync *s = w->obj;
  pthread_mutex_lock(&s->lock);
  int queued = px_queue_linked(&w->link);
  if (queued) {
    px_queue_remove(&w->link);
    w->timed_out = 1;
  }
  pthread_mutex_unlock(&s->lock);
  if (queued) px_wake(&w->w);
}

int px_sync_park(lua_State *L, swaiter *w, uint64_t timeout_ms) {
  if (timeout_ms != UINT64_MAX) {
    /* The timer runs on this VM's loop, so it cannot fire before the task
     * has yielded; deliver, discard or cancel close it (waiter_free). */
    uv_loop_t *loop = px_vm_loop(px_vm_of(L));
    uv_update_time(loop);
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->has_timer = 1;
    uv_timer_start(&w->timer, timer_fired, timeout_ms, 0);
  }
  return px_park(L, &w->w);
}

static int prepare_call(lua_State *L) {
  px_wait_prepare(L, lua_touserdata(L, 1));
  return 0;
}

/* A waiter for L's task, prepared (so it may be queued and woken at once).
 * Raises, allocating nothing, when L cannot park. */
swaiter *px_sync_new_waiter(lua_State *L, px_sync *s, const char *what) {
  swaiter *w = calloc(1, sizeof *w);
  if (!w) px_oom(L, "sync wait");
  px_queue_init(&w->link);
  w->w.what = what;
  w->w.deliver = w_deliver;
  w->w.discard = w_discard;
  w->w.cancel = w_cancel;
  lua_pushcfunction(L, prepare_call);
  lua_pushlightuserdata(L, &w->w);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    free(w);
    lua_error(L);
  }
  px_shared_retain(&s->hdr);
  w->obj = s;
  return w;
}

void *px_sync_owner(lua_State *L) {
  px_task *t = px_task_current(L);
  return t ? (void *)t : (void *)L;
}

/* Under s->lock: take what the caller waits for if it can have it now
 * (the mutex for `me`, n permits, a waitgroup at zero): 1 taken, 0 wait,
 * -1 it never can (the mutex is the caller's already). */
typedef int (*take_fn)(px_sync *s, void *me, long n);

/* Take, or queue a waiter (FIFO) and park until whoever frees the thing
 * grants it.  The waiter is allocated outside the lock, so the lock is
 * taken twice and `take` asked again in between.  Returns what a C
 * function returns (px_park's lua_yield), or 0 with *never set when take
 * said -1 (nothing done). */
static int take_or_park(lua_State *L, px_sync *s, take_fn take, void *me, long n, const char *what,
                        int *never) {
  pthread_mutex_lock(&s->lock);
  int got = take(s, me, n);
  pthread_mutex_unlock(&s->lock);
  *never = got < 0;
  if (got) return 0;
  swaiter *w = px_sync_new_waiter(L, s, what);
  w->value = n;
  pthread_mutex_lock(&s->lock);
  if (take(s, me, n) > 0) {
    pthread_mutex_unlock(&s->lock);
    px_sync_waiter_free(w);
    return 0;
  }
  px_sync_enqueue(s, w);
  pthread_mutex_unlock(&s->lock);
  return px_park(L, &w->w);
}

/* ---- mutex ---------------------------------------------------------------- */

static int mutex_take(px_sync *s, void *me, long n) {
  (void)n;
  if (!s->owner) {
    s->owner = me;
    return 1;
  }
  return s->owner == me ? -1 : 0;
}

int px_sync_mutex_lock(lua_State *L, px_sync *s) {
  int never;
  int r = take_or_park(L, s, mutex_take, px_sync_owner(L), 0, "mutex lock", &never);
  if (never) return luaL_error(L, "mutex is already locked by this task (it is not recursive)");
  return r;
}

static int mutex_lock(lua_State *L) { return px_sync_mutex_lock(L, check_sync(L, K_MUTEX)); }

static int mutex_try_lock(lua_State *L) {
  px_sync *s = check_sync(L, K_MUTEX);
  void *me = px_sync_owner(L);
  pthread_mutex_lock(&s->lock);
  int got = mutex_take(s, me, 0) > 0;
  pthread_mutex_unlock(&s->lock);
  lua_pushboolean(L, got);
  return 1;
}

int px_sync_mutex_unlock(px_sync *s, void *me) {
  swaiter *wake = NULL;
  pthread_mutex_lock(&s->lock);
  if (s->owner != me) {
    int locked = s->owner != NULL;
    pthread_mutex_unlock(&s->lock);
    return locked ? -2 : -1;
  }
  swaiter *next = px_sync_grant_first(s, &wake);
  s->owner = next ? (void *)next->w.task : NULL; /* handed over, FIFO */
  pthread_mutex_unlock(&s->lock);
  px_sync_wake_all(wake);
  return 0;
}

static int mutex_unlock(lua_State *L) {
  px_sync *s = check_sync(L, K_MUTEX);
  int rc = px_sync_mutex_unlock(s, px_sync_owner(L));
  if (rc == -2) return luaL_error(L, "unlock of a mutex held by another task");
  if (rc == -1) return luaL_error(L, "unlock of a mutex that is not locked");
  return 0;
}

/* m:owned(): whether the calling task holds m. */
static int mutex_owned(lua_State *L) {
  px_sync *s = check_sync(L, K_MUTEX);
  void *me = px_sync_owner(L);
  pthread_mutex_lock(&s->lock);
  int mine = s->owner == me;
  pthread_mutex_unlock(&s->lock);
  lua_pushboolean(L, mine);
  return 1;
}

static int mutex_locked(lua_State *L) {
  px_sync *s = check_sync(L, K_MUTEX);
  pthread_mutex_lock(&s->lock);
  int locked = s->owner != NULL;
  pthread_mutex_unlock(&s->lock);
  lua_pushboolean(L, locked);
  return 1;
}

/* ---- semaphore ------------------------------------------------------------ */

/* Permits are counted in a long; a count beyond 2^53 could not be read back
 * exactly from Lua, so no request or total may exceed it. */
#define SEM_MAX 9007199254740992.0

/* The permit count at idx (default 1): an integer 1..2^53, or raise. */
static long check_permits(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 1;
  lua_Number n = luaL_checknumber(L, idx);
  if (!(n >= 1 && n <= SEM_MAX) || n != floor(n))
    luaL_argerror(L, idx, lua_pushfstring(L, "number of permits must be an integer "
                                             "from 1 to 2^53, got %s",
                                          lua_tostring(L, idx)));
  return (long)n;
}

static int sem_take(px_sync *s, void *me, long n) {
  (void)me;
  if (s->count < n || px_sync_first(s)) return 0; /* FIFO: no barging past a waiter */
  s->count -= n;
  return 1;
}

/* s:acquire([n]): take n permits (default 1), parking until n are free. */
static int sem_acquire(lua_State *L) {
  px_sync *s = check_sync(L, K_SEMAPHORE);
  int never;
  return take_or_park(L, s, sem_take, NULL, check_permits(L, 2), "semaphore acquire", &never);
}

/* s:try_acquire([n]) -> whether it took n permits (never parks). */
static int sem_try_acquire(lua_State *L) {
  px_sync *s = check_sync(L, K_SEMAPHORE);
  long n = check_permits(L, 2);
  pthread_mutex_lock(&s->lock);
  int got = sem_take(s, NULL, n);
  pthread_mutex_unlock(&s->lock);
  lua_pushboolean(L, got);
  return 1;
}

/* s:release([n]): give back n permits (default 1). */
static int sem_release(lua_State *L) {
  px_sync *s = check_sync(L, K_SEMAPHORE);
  long n = check_permits(L, 2);
  swaiter *wake = NULL;
  pthread_mutex_lock(&s->lock);
  if (s->count > (long)SEM_MAX - n) {
    pthread_mutex_unlock(&s->lock);
    return luaL_error(L, "semaphore count would exceed 2^53");
  }
  s->count += n;
  sem_grant(s, &wake);
  pthread_mutex_unlock(&s->lock);
  px_sync_wake_all(wake);
  return 0;
}

/* The counter of a semaphore (free permits) or a waitgroup. */
static int push_count(lua_State *L, int kind) {
  px_sync *s = check_sync(L, kind);
  pthread_mutex_lock(&s->lock);
  long n = s->count;
  pthread_mutex_unlock(&s->lock);
  lua_pushinteger(L, n);
  return 1;
}

static int sem_value(lua_State *L) { return push_count(L, K_SEMAPHORE); }

/* ---- barrier -------------------------------------------------------------- */

/* b:wait() -> this party's arrival number, 1..n (n: the last one, which
 * released the others). */
static int barrier_wait(lua_State *L) {
  px_sync *s = check_sync(L, K_BARRIER);
  swaiter *w = NULL;
  for (;;) {
    pthread_mutex_lock(&s->lock);
    if (s->count + 1 == s->parties) { /* the last party: release the round */
      swaiter *wake = NULL;
      s->count = 0;
      while (px_sync_grant_first(s, &wake)) {
      }
      pthread_mutex_unlock(&s->lock);
      px_sync_wake_all(wake);
      if (w) px_sync_waiter_free(w);
      lua_pushinteger(L, s->parties);
      return 1;
    }
    if (w) break; /* looked again with the waiter at hand: queue it */
    pthread_mutex_unlock(&s->lock);
    w = px_sync_new_waiter(L, s, "barrier wait");
  }
  w->value = ++s->count;
  px_sync_enqueue(s, w);
  pthread_mutex_unlock(&s->lock);
  return px_park(L, &w->w);
}

static int barrier_parties(lua_State *L) {
  px_sync *s = check_sync(L, K_BARRIER);
  lua_pushinteger(L, s->parties);
  return 1;
}

/* ---- waitgroup ------------------------------------------------------------ */

static int wg_add_n(lua_State *L, px_sync *s, lua_Number d) {
  if (d != floor(d) || fabs(d) > 1e15) return luaL_argerror(L, 2, "delta must be an integer");
  swaiter *wake = NULL;
  pthread_mutex_lock(&s->lock);
  long n = s->count + (long)d;
  if (n < 0) {
    pthread_mutex_unlock(&s->lock);
    return luaL_error(L, "waitgroup counter would go negative (more done() than add())");
  }
  s->count = n;
  if (n == 0)
    while (px_sync_grant_first(s, &wake)) {
    }
  pthread_mutex_unlock(&s->lock);
  px_sync_wake_all(wake);
  lua_pushinteger(L, n);
  return 1;
}

static int wg_add(lua_State *L) {
  px_sync *s = check_sync(L, K_WAITGROUP);
  return wg_add_n(L, s, luaL_optnumber(L, 2, 1));
}

static int wg_done(lua_State *L) {
  px_sync *s = check_sync(L, K_WAITGROUP);
  return wg_add_n(L, s, -1);
}

static int wg_take(px_sync *s, void *me, long n) {
  (void)me;
  (void)n;
  return s->count == 0;
}

static int wg_wait(lua_State *L) {
  int never;
  return take_or_park(L, check_sync(L, K_WAITGROUP), wg_take, NULL, 0, "waitgroup wait", &never);
}

static int wg_count(lua_State *L) { return push_count(L, K_WAITGROUP); }

/* ---- atomic --------------------------------------------------------------- */

static px_atomic *check_atomic(lua_State *L) { return (px_atomic *)check_obj(L, &types[T_ATOMIC]); }

/* Lua numbers are doubles: integers are exact up to 2^53. */
/* An integer argument: a number exact as an integer (|n| <= 2^53), or an
 * int64_t/uint64_t cdata (its 64 bits as they are).  *kind (optional):
 * which of the three it was. */
static int64_t check_int64_kind(lua_State *L, int idx, int *kind) {
  if (lua_type(L, idx) == LUA_TCDATA_) {
    uint8_t buf[9];
    if (px_scalar_put_cdata(L, idx, buf) == 9) {
      int64_t bits;
      memcpy(&bits, buf + 1, 8);
      if (kind) *kind = buf[0] == T_UINT64 ? AT_UINT64 : AT_INT64;
      return bits;
    }
    luaL_argerror(L, idx, "integer expected (a number, or an int64_t/uint64_t cdata)");
  }
  lua_Number n = luaL_checknumber(L, idx);
  if (n != floor(n) || !(fabs(n) <= 9007199254740992.0))
    luaL_argerror(L, idx, "integer expected (|n| <= 2^53, or 1LL/1ULL cdata beyond)");
  if (kind) *kind = AT_NUMBER;
  return (int64_t)n;
}

static int64_t check_int64(lua_State *L, int idx) { return check_int64_kind(L, idx, NULL); }

/* Push v as the atomic's kind says (see AT_NUMBER). */
static void push_value(lua_State *L, const px_atomic *a, int64_t v) {
  if (a->kind == AT_NUMBER && v >= -9007199254740992LL && v <= 9007199254740992LL) {
    lua_pushnumber(L, (lua_Number)v);
  } else if (px_scalar_push_int64(L, a->kind == AT_UINT64, v) != 0) {
    luaL_error(L, "parx.atomic: no FFI to return %s", "a 64-bit value");
  }
}

static int at_get(lua_State *L) {
  px_atomic *a = check_atomic(L);
  push_value(L, a, atomic_load(&a->value));
  return 1;
}

static int at_set(lua_State *L) {
  px_atomic *a = check_atomic(L);
  atomic_store(&a->value, check_int64(L, 2));
  return 0;
}

static int at_add(lua_State *L) {
  px_atomic *a = check_atomic(L);
  int64_t d = lua_isnoneornil(L, 2) ? 1 : check_int64(L, 2);
  /* Wraps around like the atomic add itself (no signed overflow). */
  int64_t now = (int64_t)((uint64_t)atomic_fetch_add(&a->value, d) + (uint64_t)d);
  push_value(L, a, now);
  return 1;
}

static int at_cas(lua_State *L) {
  px_atomic *a = check_atomic(L);
  int64_t expected = check_int64(L, 2);
  int64_t desired = check_int64(L, 3);
  lua_pushboolean(L, atomic_compare_exchange_strong(&a->value, &expected, desired));
  return 1;
}

static int at_exchange(lua_State *L) {
  px_atomic *a = check_atomic(L);
  push_value(L, a, atomic_exchange(&a->value, check_int64(L, 2)));
  return 1;
}

/* ---- constructors --------------------------------------------------------- */

static long check_count(lua_State *L, int idx, long min, long dflt, const char *what) {
  if (lua_isnoneornil(L, idx)) return dflt;
  lua_Number n = luaL_checknumber(L, idx);
  if (n != floor(n) || n < (lua_Number)min || n > 2147483647.0)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s must be an integer from %d to 2^31-1, got %s",
                                          what, (int)min, lua_tostring(L, idx)));
  return (long)n;
}

void px_sync_init(px_sync *s, const px_shared_type *type, int kind) {
  px_shared_init(&s->hdr, type);
  pthread_mutex_init(&s->lock, NULL);
  px_queue_init(&s->waiters);
  s->kind = kind;
}

px_sync *px_sync_new(lua_State *L, const px_shared_type *type, int kind, long count,
                     long parties) {
  px_sync *s = calloc(1, sizeof *s);
  if (!s) px_oom(L, "sync object");
  px_sync_init(s, type, kind);
  s->count = count;
  s->parties = parties;
  px_shared_push(L, &s->hdr);
  return s;
}

static int new_sync(lua_State *L, int kind, long count, long parties) {
  px_sync_new(L, &types[kind], kind, count, parties);
  return 1;
}

static int l_mutex(lua_State *L) { return new_sync(L, K_MUTEX, 0, 0); }

static int l_semaphore(lua_State *L) {
  return new_sync(L, K_SEMAPHORE, check_count(L, 1, 0, 1, "semaphore count"), 0);
}

static int l_barrier(lua_State *L) {
  if (lua_isnoneornil(L, 1)) return luaL_argerror(L, 1, "number of parties expected");
  return new_sync(L, K_BARRIER, 0, check_count(L, 1, 1, 1, "barrier parties"));
}

static int l_waitgroup(lua_State *L) {
  return new_sync(L, K_WAITGROUP, check_count(L, 1, 0, 0, "waitgroup count"), 0);
}

static int l_atomic(lua_State *L) {
  int kind = AT_NUMBER;
  int64_t v = lua_isnoneornil(L, 1) ? 0 : check_int64_kind(L, 1, &kind);
  px_atomic *a = calloc(1, sizeof *a);
  if (!a) return px_oom(L, "atomic");
  px_shared_init(&a->hdr, &types[T_ATOMIC]);
  atomic_init(&a->value, v);
  a->kind = kind;
  px_shared_push(L, &a->hdr);
  return 1;
}

static int l_tostring(lua_State *L) {
  px_shared *obj = px_shared_test(L, 1, NULL);
  if (!obj) return luaL_argerror(L, 1, "parx sync object expected");
  if (obj->type == &types[T_ATOMIC]) {
    px_atomic *a = (px_atomic *)obj;
    int64_t v = atomic_load(&a->value);
    char num[32];
    if (a->kind == AT_UINT64) snprintf(num, sizeof num, "%" PRIu64 "ULL", (uint64_t)v);
    else snprintf(num, sizeof num, "%" PRId64 "%s", v, a->kind == AT_INT64 ? "LL" : "");
    lua_pushfstring(L, "parx.atomic(%s): %p", num, (void *)obj);
    return 1;
  }
  px_sync *s = (px_sync *)obj;
  pthread_mutex_lock(&s->lock);
  long count = s->count;
  int locked = s->owner != NULL;
  pthread_mutex_unlock(&s->lock);
  switch (s->kind) {
  case K_MUTEX: lua_pushfstring(L, "parx.mutex(%s): %p", locked ? "locked" : "unlocked", (void *)s); break;
  case K_SEMAPHORE: lua_pushfstring(L, "parx.semaphore(%d): %p", (int)count, (void *)s); break;
  case K_BARRIER: lua_pushfstring(L, "parx.barrier(%d/%d): %p", (int)count, (int)s->parties, (void *)s); break;
  default: lua_pushfstring(L, "parx.waitgroup(%d): %p", (int)count, (void *)s); break;
  }
  return 1;
}

static const luaL_Reg mutex_m[] = {{"lock", mutex_lock}, {"unlock", mutex_unlock},
  {"try_lock", mutex_try_lock}, {"locked", mutex_locked}, {"owned", mutex_owned}, {NULL, NULL}};
static const luaL_Reg sem_m[] = {{"acquire", sem_acquire}, {"release", sem_release},
  {"try_acquire", sem_try_acquire}, {"value", sem_value}, {NULL, NULL}};
static const luaL_Reg barrier_m[] = {{"wait", barrier_wait}, {"parties", barrier_parties}, {NULL, NULL}};
static const luaL_Reg wg_m[] = {{"add", wg_add}, {"done", wg_done}, {"wait", wg_wait},
  {"count", wg_count}, {NULL, NULL}};
static const luaL_Reg atomic_m[] = {{"get", at_get}, {"set", at_set}, {"add", at_add},
  {"cas", at_cas}, {"exchange", at_exchange}, {NULL, NULL}};

void px_sync_add_types(lua_State *L, px_shared_type *types, const luaL_Reg *const *methods,
                       const char *const *names, int n, lua_CFunction tostring) {
  for (int k = 0; k < n; k++) {
    px_shared_register(&types[k]);
    px_shared_meta(L, &types[k]);
    for (const luaL_Reg *r = methods[k]; r->name; r++) {
      lua_pushvalue(L, -1);
      lua_pushcclosure(L, r->func, 1);
      lua_setfield(L, -2, r->name);
    }
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setfield(L, -2, names[k]);
  }
}

/* Push parx.c.sync's table with the five types of this file: constructors
 * plus `metatables`, name -> metatable (sync_open.c adds event.c's). */
void px_sync_open_primitives(lua_State *L) {
  static const luaL_Reg *const methods[] = {mutex_m, sem_m, barrier_m, wg_m, atomic_m};
  static const char *const short_names[] = {"mutex", "semaphore", "barrier", "waitgroup", "atomic"};
  lua_newtable(L);
  lua_newtable(L); /* metatables */
  px_sync_add_types(L, types, methods, short_names, T_ATOMIC + 1, l_tostring);
  lua_setfield(L, -2, "metatables");
  static const luaL_Reg ctors[] = {{"mutex", l_mutex}, {"semaphore", l_semaphore},
    {"barrier", l_barrier}, {"waitgroup", l_waitgroup}, {"atomic", l_atomic}, {NULL, NULL}};
  for (const luaL_Reg *r = ctors; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
}
