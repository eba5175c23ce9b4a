/*
 * event.c -- parx.event and parx.condition, the waits for "something
 * happened" (part of module "parx.c.sync"; the queue is sync.c's).
 *
 * An event is a flag: set() wakes every waiter and lets later waits
 * through until clear().  A condition is a queue of waiters beside a
 * parx.mutex: wait() joins the queue and releases the mutex in one step
 * (the notifier must hold the mutex, so no notify can fall between them),
 * notify(n) wakes the first n.  The woken task re-locks the mutex in Lua
 * (sync.lua), with a second park.
 *
 * Both waits take a timeout (a timer on the waiting task's loop, sync.c)
 * and return false when it expired, true when woken.
 */
#include <stdlib.h>

#include "sync.h"

enum { T_EVENT, T_COND };

static px_shared_type types[] = {
  {"parx.event", px_sync_free, px_sync_push, 0},
  {"parx.condition", px_sync_free, px_sync_push, 0},
};

/* ---- event ---------------------------------------------------------------- */

/* ev:set(): set the flag and wake every waiter. */
static int ev_set(lua_State *L) {
  px_sync *s = px_sync_check(L, &types[T_EVENT]);
  swaiter *wake = NULL;
  pthread_mutex_lock(&s->lock);
  s->count = 1;
  while (px_sync_grant_first(s, &wake)) {
  }
  pthread_mutex_unlock(&s->lock);
  px_sync_wake_all(wake);
  return 0;
}

/* ev:clear(): reset the flag; later waits park until the next set(). */
static int ev_clear(lua_State *L) {
  px_sync *s = px_sync_check(L, &types[T_EVENT]);
  pthread_mutex_lock(&s->lock);
  s->count = 0;
  pthread_mutex_unlock(&s->lock);
  return 0;
}

static int ev_is_set(lua_State *L) {
  px_sync *s = px_sync_check(L, &types[T_EVENT]);
  pthread_mutex_lock(&s->lock);
  int set = s->count != 0;
  pthread_mutex_unlock(&s->lock);
  lua_pushboolean(L, set);
  return 1;
}

/* ev:wait([timeout]) -> true once the flag is set, false if timeout
 * seconds passed first (0: never parks). */
static int ev_wait(lua_State *L) {
  px_sync *s = px_sync_check(L, &types[T_EVENT]);
  uint64_t ms;
  px_timeout_ms(L, 2, &ms);
  pthread_mutex_lock(&s->lock);
  int set = s->count != 0;
  pthread_mutex_unlock(&s->lock);
  if (set || ms == 0) {
    lua_pushboolean(L, set);
    return 1;
  }
  swaiter *w = px_sync_new_waiter(L, s, "event wait");
  pthread_mutex_lock(&s->lock);
  if (s->count) {
    pthread_mutex_unlock(&s->lock);
    px_sync_waiter_free(w);
    lua_pushboolean(L, 1);
    return 1;
  }
  px_sync_enqueue(s, w);
  pthread_mutex_unlock(&s->lock);
  return px_sync_park(L, w, ms);
}

/* ---- condition ------------------------------------------------------------ */

static px_sync *check_cond_owned(lua_State *L, const char *what) {
  px_sync *c = px_sync_check(L, &types[T_COND]);
  px_sync *m = c->mutex;
  pthread_mutex_lock(&m->lock);
  int mine = m->owner == px_sync_owner(L);
  pthread_mutex_unlock(&m->lock);
  if (!mine)
    px_error_user(L, "%s on a condition whose mutex this task does not hold (lock it first, "
                  "or use c:with(fn))", what);
  return c;
}

/* _wait(c[, timeout]) -> true when notified, false on timeout.  Releases
 * the mutex; the caller (sync.lua) locks it again. */
static int cond_wait(lua_State *L) {
  px_sync *c = check_cond_owned(L, "wait");
  uint64_t ms;
  px_timeout_ms(L, 2, &ms);
  swaiter *w = px_sync_new_waiter(L, c, "condition wait");
  pthread_mutex_lock(&c->lock);
  px_sync_enqueue(c, w);
  pthread_mutex_unlock(&c->lock);
  px_sync_mutex_unlock(c->mutex, px_sync_owner(L));
  return px_sync_park(L, w, ms);
}

/* _relock(c): lock c's mutex again after a wait. */
static int cond_relock(lua_State *L) {
  px_sync *c = px_sync_check(L, &types[T_COND]);
  return px_sync_mutex_lock(L, c->mutex);
}

static int notify_n(lua_State *L, px_sync *c, long n) {
  swaiter *wake = NULL;
  long woken = 0;
  pthread_mutex_lock(&c->lock);
  while (woken < n && px_sync_grant_first(c, &wake)) woken++;
  pthread_mutex_unlock(&c->lock);
  px_sync_wake_all(wake);
  lua_pushinteger(L, woken);
  return 1;
}

/* c:notify([n = 1]) -> how many waiters it woke (at most n). */
static int cond_notify(lua_State *L) {
  px_sync *c = check_cond_owned(L, "notify");
  lua_Number n = luaL_optnumber(L, 2, 1);
  if (!(n >= 0)) return luaL_argerror(L, 2, "number of waiters must be >= 0");
  return notify_n(L, c, n > 2147483647.0 ? 2147483647L : (long)n);
}

/* c:notify_all() -> how many waiters it woke. */
static int cond_notify_all(lua_State *L) {
  return notify_n(L, check_cond_owned(L, "notify_all"), 2147483647L);
}

/* c:mutex(): the condition's mutex. */
static int cond_mutex(lua_State *L) {
  px_sync *c = px_sync_check(L, &types[T_COND]);
  px_shared_retain(&c->mutex->hdr);
  px_sync_push(L, &c->mutex->hdr);
  return 1;
}

/* ---- constructors --------------------------------------------------------- */

static int l_event(lua_State *L) {
  px_sync_new(L, &types[T_EVENT], K_EVENT, 0, 0);
  return 1;
}

/* parx.condition([mutex]): a new mutex when none is given. */
static int l_condition(lua_State *L) {
  px_sync *m = NULL;
  if (!lua_isnoneornil(L, 1)) {
    px_shared *obj = px_shared_test(L, 1, NULL);
    if (obj && obj->type->free == px_sync_free && ((px_sync *)obj)->kind == K_MUTEX)
      m = (px_sync *)obj;
    if (!m) return luaL_argerror(L, 1, "parx.mutex expected");
    px_shared_retain(&m->hdr);
  } else {
    lua_getfield(L, lua_upvalueindex(1), "mutex");
    lua_call(L, 0, 1);
    m = (px_sync *)px_shared_test(L, -1, NULL);
    px_shared_retain(&m->hdr);
    lua_pop(L, 1);
  }
  px_sync *c = calloc(1, sizeof *c);
  if (!c) {
    px_shared_release(&m->hdr);
    return px_oom(L, "condition");
  }
  px_sync_init(c, &types[T_COND], K_COND);
  c->mutex = m;
  px_shared_push(L, &c->hdr);
  return 1;
}

static int l_tostring(lua_State *L) {
  px_shared *obj = px_shared_test(L, 1, NULL);
  if (!obj || obj->type->free != px_sync_free) return luaL_argerror(L, 1, "parx event expected");
  px_sync *s = (px_sync *)obj;
  pthread_mutex_lock(&s->lock);
  long count = s->count;
  int waiting = 0;
  for (px_queue *q = s->waiters.next; q != &s->waiters; q = q->next) waiting++;
  pthread_mutex_unlock(&s->lock);
  if (s->kind == K_EVENT)
    lua_pushfstring(L, "parx.event(%s): %p", count ? "set" : "clear", (void *)s);
  else
    lua_pushfstring(L, "parx.condition(%d waiting): %p", waiting, (void *)s);
  return 1;
}

void px_sync_open_events(lua_State *L) {
  static const luaL_Reg event_m[] = {{"set", ev_set}, {"clear", ev_clear},
    {"is_set", ev_is_set}, {"wait", ev_wait}, {NULL, NULL}};
  static const luaL_Reg cond_m[] = {{"_wait", cond_wait}, {"_relock", cond_relock},
    {"notify", cond_notify}, {"notify_all", cond_notify_all}, {"mutex", cond_mutex},
    {NULL, NULL}};
  static const luaL_Reg *const methods[] = {event_m, cond_m};
  static const char *const names[] = {"event", "condition"};
  lua_getfield(L, -1, "metatables");
  px_sync_add_types(L, types, methods, names, T_COND + 1, l_tostring);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_event);
  lua_setfield(L, -2, "event");
  lua_pushvalue(L, -1); /* the module: condition() makes its mutex with it */
  lua_pushcclosure(L, l_condition, 1);
  lua_setfield(L, -2, "condition");
}
