/*
 * timer.c -- parx.c.timer: one-shot and repeating timers on the VM's loop.
 *
 * A timer's callback is Lua code that must run as a new task, but a libuv
 * callback may not call Lua.  So each VM has one dispatcher task (started by
 * lua/parx/timer.lua while timers exist): the uv_timer callback puts the
 * timer on the VM's fired queue and wakes the dispatcher, which takes the
 * timer ids off the queue one by one and starts a task for each.  The
 * dispatcher returns (and its task ends) when no timer is active, so it never
 * keeps a script alive nor looks like a deadlock.
 *
 * Cost: a pending timer is one malloc'd uv_timer_t plus a small userdata and
 * the Lua table of its callback; libuv keeps timers in a binary heap, so
 * 100,000 pending timers cost memory and O(log n) per start/fire, no scan.
 *
 * Lifetime: the userdata holds a pointer to the px_timer; the Lua layer
 * anchors the userdata while the timer is active or queued.  The handle is
 * closed as soon as the timer is finished (fired once, or stopped); the
 * struct is freed when both the close callback ran and the userdata was
 * collected.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/px.h"

#define TIMER_META "parx.timer"

typedef struct px_timer px_timer;

/* One per VM: the fired queue and the dispatcher's wait. */
typedef struct timer_vm {
  uv_loop_t *loop;
  px_timer *head, *tail; /* fired, not yet dispatched (doubly linked) */
  long active;           /* started and neither stopped nor fired once */
  px_wait wait;          /* the dispatcher's park */
  int parked;            /* the dispatcher is parked on wait */
  int woken;             /* px_wake(wait) was called, deliver not yet run */
  double next_id;
} timer_vm;

struct px_timer {
  uv_timer_t handle;
  timer_vm *tvm;
  px_timer *prev, *next; /* on the fired queue */
  double id;             /* the Lua layer's key for the callback */
  int queued;            /* on the fired queue */
  int active;            /* counted in tvm->active */
  int repeating;
  int closed;            /* uv_close called */
  int close_done;        /* close callback ran */
  int orphaned;          /* the userdata was collected */
};

/* ------------------------------------------------------------------------
 * The fired queue.
 * ---------------------------------------------------------------------- */
static void queue_push(timer_vm *tvm, px_timer *t) {
  t->queued = 1;
  t->next = NULL;
  t->prev = tvm->tail;
  if (tvm->tail) tvm->tail->next = t;
  else tvm->head = t;
  tvm->tail = t;
}

static void queue_remove(timer_vm *tvm, px_timer *t) {
  if (t->prev) t->prev->next = t->next;
  else tvm->head = t->next;
  if (t->next) t->next->prev = t->prev;
  else tvm->tail = t->prev;
  t->prev = t->next = NULL;
  t->queued = 0;
}

static void close_cb(uv_handle_t *h) {
  px_timer *t = h->data;
  t->close_done = 1;
  if (t->orphaned) free(t);
}

static void timer_close(px_timer *t) {
  if (t->closed) return;
  t->closed = 1;
  uv_close((uv_handle_t *)&t->handle, close_cb);
}

/* Wake the dispatcher when it has something to do: a fired timer, or
 * nothing left to wait for (so that it returns). */
static void dispatcher_poke(timer_vm *tvm) {
  if (!tvm->parked || tvm->woken) return;
  if (tvm->head == NULL && tvm->active > 0) return;
  tvm->woken = 1;
  px_wake(&tvm->wait);
}

static void timer_cb(uv_timer_t *h) {
  px_timer *t = h->data;
  timer_vm *tvm = t->tvm;
  if (!t->repeating && t->active) {
    t->active = 0;
    tvm->active--;
  }
  /* A repeating timer that fires again before its last tick was dispatched
   * coalesces: one pending tick at most. */
  if (!t->queued) queue_push(tvm, t);
  dispatcher_poke(tvm);
}

/* Take the next fired timer: pushes its id, or false when there is none but
 * timers are still active (call again), or nil when nothing is left. */
static int take(lua_State *L, timer_vm *tvm) {
  px_timer *t = tvm->head;
  if (t != NULL) {
    queue_remove(tvm, t);
    if (!t->repeating) timer_close(t); /* finished: release the handle now */
    lua_pushnumber(L, t->id);
    return 1;
  }
  if (tvm->active > 0) lua_pushboolean(L, 0);
  else lua_pushnil(L);
  return 1;
}

static int dispatcher_deliver(lua_State *co, px_wait *w) {
  timer_vm *tvm = (timer_vm *)((char *)w - offsetof(timer_vm, wait));
  tvm->parked = 0;
  tvm->woken = 0;
  return take(co, tvm);
}

static void dispatcher_discard(px_wait *w) {
  timer_vm *tvm = (timer_vm *)((char *)w - offsetof(timer_vm, wait));
  tvm->parked = 0;
  tvm->woken = 0;
}

static int dispatcher_cancel(px_wait *w) {
  timer_vm *tvm = (timer_vm *)((char *)w - offsetof(timer_vm, wait));
  if (tvm->woken) return 0;
  tvm->parked = 0;
  return 1;
}

static timer_vm *check_tvm(lua_State *L) {
  return *(timer_vm **)lua_touserdata(L, lua_upvalueindex(1));
}

/* next() -> id | false | nil: the dispatcher's wait for work.  Parks only
 * while timers are active and none has fired. */
static int timer_next(lua_State *L) {
  timer_vm *tvm = check_tvm(L);
  if (tvm->head != NULL || tvm->active == 0) return take(L, tvm);
  if (tvm->parked) return luaL_error(L, "timer dispatcher already running");
  memset(&tvm->wait, 0, sizeof tvm->wait);
  tvm->wait.what = "timer dispatch";
  tvm->wait.deliver = dispatcher_deliver;
  tvm->wait.discard = dispatcher_discard;
  tvm->wait.cancel = dispatcher_cancel;
  px_wait_prepare(L, &tvm->wait);
  tvm->parked = 1;
  tvm->woken = 0;
  return px_park(L, &tvm->wait);
}

/* Seconds to libuv's milliseconds, rounding a positive delay up so that a
 * timer never fires early. */
static uint64_t to_ms(lua_State *L, int idx, const char *what) {
  lua_Number s = luaL_checknumber(L, idx);
  if (!(s >= 0) || s > 1e12) luaL_argerror(L, idx, what);
  return (uint64_t)ceil(s * 1000.0);
}

/* new(delay, interval) -> timer, id.  interval nil or 0: one-shot. */
static int timer_new(lua_State *L) {
  timer_vm *tvm = check_tvm(L);
  uint64_t delay = to_ms(L, 1, "delay must be a number of seconds >= 0");
  uint64_t interval = 0;
  if (!lua_isnoneornil(L, 2)) {
    interval = to_ms(L, 2, "interval must be a number of seconds > 0");
    if (interval == 0) luaL_argerror(L, 2, "interval must be a number of seconds > 0");
  }
  px_timer **box = lua_newuserdata(L, sizeof *box);
  *box = NULL;
  luaL_getmetatable(L, TIMER_META);
  lua_setmetatable(L, -2);
  px_timer *t = calloc(1, sizeof *t);
  if (t == NULL) return luaL_error(L, "not enough memory");
  int rc = uv_timer_init(tvm->loop, &t->handle);
  if (rc < 0) {
    free(t);
    return px_push_error(L, rc, NULL);
  }
  t->handle.data = t;
  t->tvm = tvm;
  t->id = ++tvm->next_id;
  t->repeating = interval > 0;
  *box = t;
  /* The loop's cached time may be stale after a long stretch of Lua code;
   * one clock read keeps the delay relative to now. */
  uv_update_time(tvm->loop);
  uv_timer_start(&t->handle, timer_cb, delay, interval);
  t->active = 1;
  tvm->active++;
  lua_pushnumber(L, t->id);
  return 2;
}

static px_timer *check_timer(lua_State *L) {
  px_timer **box = luaL_checkudata(L, 1, TIMER_META);
  if (*box == NULL) luaL_argerror(L, 1, "timer is not initialised");
  return *box;
}

/* timer:stop() -> true if the timer was still pending (it will not fire
 * again, a queued tick is dropped), false if it had already finished. */
static int timer_stop(lua_State *L) {
  px_timer *t = check_timer(L);
  timer_vm *tvm = t->tvm;
  int was = t->active || t->queued;
  if (t->queued) queue_remove(tvm, t);
  if (t->active) {
    t->active = 0;
    tvm->active--;
  }
  timer_close(t);
  dispatcher_poke(tvm);
  lua_pushboolean(L, was);
  return 1;
}

static int timer_is_active(lua_State *L) {
  px_timer *t = check_timer(L);
  lua_pushboolean(L, t->active || t->queued);
  return 1;
}

static int timer_id(lua_State *L) {
  px_timer *t = check_timer(L);
  lua_pushnumber(L, t->id);
  return 1;
}

/* Only reached when the Lua layer dropped its anchor, i.e. the timer is
 * finished -- or when the VM closes, where everything is collected. */
static int timer_gc(lua_State *L) {
  px_timer **box = luaL_checkudata(L, 1, TIMER_META);
  px_timer *t = *box;
  if (t == NULL) return 0;
  *box = NULL;
  t->orphaned = 1;
  if (!t->closed) {
    uv_timer_stop(&t->handle);
    timer_close(t);
  } else if (t->close_done) {
    free(t);
  }
  return 0;
}

static int timer_tostring(lua_State *L) {
  px_timer **box = luaL_checkudata(L, 1, TIMER_META);
  px_timer *t = *box;
  lua_pushfstring(L, "parx.timer (%s)",
                  t == NULL ? "freed" : (t->active || t->queued) ? "active" : "finished");
  return 1;
}

static int tvm_gc(lua_State *L) {
  timer_vm **box = lua_touserdata(L, 1);
  free(*box);
  *box = NULL;
  return 0;
}

/* active_count() -> timers pending in this VM (for tests and debugging). */
static int timer_active_count(lua_State *L) {
  timer_vm *tvm = check_tvm(L);
  lua_pushnumber(L, (double)tvm->active);
  return 1;
}

static const luaL_Reg timer_methods[] = {
  {"stop", timer_stop}, {"active", timer_is_active}, {"id", timer_id}, {NULL, NULL}};

static const luaL_Reg timer_funcs[] = {
  {"new", timer_new}, {"next", timer_next}, {"active_count", timer_active_count},
  {NULL, NULL}};

int px_open_timer(lua_State *L) {
  lua_newtable(L); /* the module */
  if (luaL_newmetatable(L, TIMER_META)) {
    lua_pushcfunction(L, timer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, timer_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    luaL_register(L, NULL, timer_methods);
    lua_setfield(L, -2, "__index");
  }
  /* The methods table, for the Lua layer to wrap stop(). */
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "methods");
  lua_pop(L, 1);

  timer_vm **box = lua_newuserdata(L, sizeof *box);
  *box = calloc(1, sizeof **box);
  if (*box == NULL) return luaL_error(L, "not enough memory");
  (*box)->loop = px_vm_loop(px_vm_of(L));
  lua_newtable(L);
  lua_pushcfunction(L, tvm_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  for (const luaL_Reg *r = timer_funcs; r->name; r++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -3, r->name);
  }
  lua_pop(L, 1);
  return 1;
}
