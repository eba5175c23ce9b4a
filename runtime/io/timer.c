/*
 * timer.c -- parx.c.timer: one-shot and repeating timers on the VM's loop.
 *
 * Storage.  Timers of the same duration (in ms) expire in the order they
 * were started, so each duration gets one FIFO list and one uv_timer_t armed
 * for the list's head (Node's timer lists).  Starting, stopping and firing a
 * timer are O(1) list operations; libuv's heap only holds one handle per
 * distinct duration.  A pending timer is one small userdata (the px_timer
 * lives inside it) plus the Lua layer's entries: 100,000 pending timers cost
 * a few MB and no scan.  (One uv_timer_t per timer cost ~150 bytes more each
 * and an O(log n) heap removal per firing, a third of the run time with
 * 100,000 timers.)
 *
 Dispatch (dispatch.h, shared with signal handlers).  The list callback
 * fires expired timers onto the VM's fired queue and wakes the dispatcher
 * task that lua/parx/timer.lua runs while timers exist.
 *
 * Lifetime.  The Lua layer anchors a timer's userdata while it is active or
 * queued, so __gc only meets finished timers -- except at lua_close, where
 * the order of finalizers is arbitrary: the per-VM state is reference
 * counted by its timers and marked closing, so no finalizer touches freed
 * memory.  A list's handle is closed when the VM state is collected.
 */
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

#define TIMER_META "parx.timer"

typedef struct px_timer px_timer;
typedef struct vm_timers vm_timers;

typedef struct timer_list {
  uv_timer_t handle;     /* due at the head's due time; stopped when empty */
  vm_timers *timers;
  uint64_t ms;           /* the duration of every timer on the list */
  px_queue pending;      /* px_timer.pending, in due order */
} timer_list;

struct vm_timers {
  px_dispatcher dispatcher; /* first; active: timers started, not stopped nor finished */
  uv_loop_t *loop;
  timer_list **lists;    /* open addressing by ms; never shrinks */
  size_t nlists, cap;
  long refs;             /* the module's userdata + live timers + lists */
  int closing;           /* the VM's state is being closed */
};

struct px_timer {
  px_source source;      /* id, and the link on the fired queue */
  vm_timers *timers;
  timer_list *list;      /* while pending on a list */
  px_queue pending;      /* on list->pending */
  uint64_t due, interval;
  int active;
};

static void timers_unref(vm_timers *timers) {
  if (--timers->refs > 0) return;
  free(timers->lists);
  free(timers);
}

static px_timer *list_head(timer_list *l) {
  if (px_queue_empty(&l->pending)) return NULL;
  return px_container_of(px_queue_head(&l->pending), px_timer, pending);
}

/* ------------------------------------------------------------------------
 * Duration lists.
 * ---------------------------------------------------------------------- */
static size_t slot_of(uint64_t ms, size_t cap) {
  return (size_t)((ms * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static void list_cb(uv_timer_t *h);

static int lists_grow(vm_timers *timers) {
  size_t cap = timers->cap ? timers->cap * 2 : 16;
  timer_list **nl = calloc(cap, sizeof *nl);
  if (nl == NULL) return -1;
  for (size_t i = 0; i < timers->cap; i++) {
    timer_list *l = timers->lists[i];
    if (l == NULL) continue;
    size_t j = slot_of(l->ms, cap);
    while (nl[j]) j = (j + 1) & (cap - 1);
    nl[j] = l;
  }
  free(timers->lists);
  timers->lists = nl;
  timers->cap = cap;
  return 0;
}

static timer_list *list_for(vm_timers *timers, uint64_t ms) {
  if (timers->cap) {
    for (size_t j = slot_of(ms, timers->cap); timers->lists[j]; j = (j + 1) & (timers->cap - 1))
      if (timers->lists[j]->ms == ms) return timers->lists[j];
  }
  if ((timers->nlists + 1) * 2 > timers->cap && lists_grow(timers) < 0) return NULL;
  timer_list *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  if (uv_timer_init(timers->loop, &l->handle) < 0) {
    free(l);
    return NULL;
  }
  l->handle.data = l;
  px_queue_init(&l->pending);
  l->timers = timers;
  l->ms = ms;
  timers->refs++;
  size_t j = slot_of(ms, timers->cap);
  while (timers->lists[j]) j = (j + 1) & (timers->cap - 1);
  timers->lists[j] = l;
  timers->nlists++;
  return l;
}

/* Arm the list's handle for its head, or stop it when the list is empty
 * (an empty list holds no active handle: it does not keep the loop alive). */
static void list_arm(timer_list *l) {
  px_timer *head = list_head(l);
  if (head == NULL) {
    uv_timer_stop(&l->handle);
    return;
  }
  uint64_t now = uv_now(l->timers->loop);
  uv_timer_start(&l->handle, list_cb, head->due > now ? head->due - now : 0, 0);
}

static void list_append(timer_list *l, px_timer *t) {
  t->list = l;
  px_queue_insert_tail(&l->pending, &t->pending);
}

/* Take t off its list, re-arming the list when t was its head. */
static void list_unlink(px_timer *t) {
  timer_list *l = t->list;
  int was_head = list_head(l) == t;
  px_queue_remove(&t->pending);
  t->list = NULL;
  if (was_head) list_arm(l);
}

static void list_close_cb(uv_handle_t *h) {
  timer_list *l = h->data;
  vm_timers *timers = l->timers;
  free(l);
  timers_unref(timers);
}

/* ------------------------------------------------------------------------
 * Firing.
 * ---------------------------------------------------------------------- */

/* The list's head is due: fire every expired timer.  A repeating timer goes
 * back to the tail with its next due time; ticks it missed while the loop
 * was busy are merged (it stays queued once). */
static void list_cb(uv_timer_t *h) {
  timer_list *l = h->data;
  vm_timers *timers = l->timers;
  uint64_t now = uv_now(timers->loop);
  px_timer *t;
  while ((t = list_head(l)) != NULL && t->due <= now) {
    px_queue_remove(&t->pending);
    if (t->interval > 0) {
      t->due += t->interval;
      if (t->due <= now) t->due = now + t->interval;
      px_queue_insert_tail(&l->pending, &t->pending);
    } else {
      t->list = NULL;
      t->active = 0;
      timers->dispatcher.active--;
    }
    px_dispatcher_queue(&timers->dispatcher, &t->source);
  }
  list_arm(l);
  px_dispatcher_poke(&timers->dispatcher);
}

/* A fired timer for the Lua layer (next() and poll(), dispatch.h): its id
 * and whether it repeats. */
static int push_fired(lua_State *L, px_source *src) {
  px_timer *t = px_container_of(src, px_timer, source);
  lua_pushnumber(L, src->id);
  lua_pushboolean(L, t->interval > 0);
  return 2;
}

static vm_timers *check_timers(lua_State *L) { return (vm_timers *)px_dispatcher_state(L); }


/* ------------------------------------------------------------------------
 * Timer objects.
 * ---------------------------------------------------------------------- */

/* Seconds to libuv's milliseconds, rounding a positive delay up so that a
 * timer never fires early.  NaN and negatives raise; math.huge (anything
 * past 1e12 s, over 30,000 years) means never and becomes NEVER_MS, which
 * leaves room for now + delay in 64 bits.  The conversion is the core's
 * checked px_seconds_to_ms. */
#define NEVER_MS ((uint64_t)1e15)
static uint64_t to_ms(lua_State *L, int idx, const char *what) {
  lua_Number s = luaL_checknumber(L, idx);
  if (!(s >= 0)) luaL_argerror(L, idx, what);
  uint64_t ms;
  if (px_seconds_to_ms(s, &ms) != 1 || ms > NEVER_MS) return NEVER_MS;
  return ms;
}

/* new(delay, interval) -> timer, id.  interval nil: one-shot. */
static int timer_new(lua_State *L) {
  vm_timers *timers = check_timers(L);
  uint64_t delay = to_ms(L, 1, "delay must be a number of seconds >= 0");
  uint64_t interval = 0;
  if (!lua_isnoneornil(L, 2)) {
    interval = to_ms(L, 2, "interval must be a number of seconds > 0");
    if (interval == 0) luaL_argerror(L, 2, "interval must be a number of seconds > 0");
  }
  timer_list *l = list_for(timers, delay);
  if (l == NULL) return px_oom(L, "timer");
  px_timer *t = lua_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  luaL_getmetatable(L, TIMER_META);
  lua_setmetatable(L, -2);
  t->timers = timers;
  timers->refs++;
  px_source_init(&timers->dispatcher, &t->source);
  px_queue_init(&t->pending);
  t->interval = interval;
  /* The loop's cached time may be stale after a long stretch of Lua code;
   * one clock read keeps the delay relative to now. */
  uv_update_time(timers->loop);
  t->due = uv_now(timers->loop) + delay;
  int was_empty = list_head(l) == NULL;
  list_append(l, t);
  if (was_empty) list_arm(l);
  t->active = 1;
  timers->dispatcher.active++;
  lua_pushnumber(L, t->source.id);
  return 2;
}

static px_timer *check_timer(lua_State *L) {
  return luaL_checkudata(L, 1, TIMER_META);
}

/* Take t off its list and the fired queue. */
static void timer_detach(px_timer *t) {
  px_dispatcher_unqueue(&t->source);
  if (t->list) list_unlink(t);
  if (t->active) {
    t->active = 0;
    t->timers->dispatcher.active--;
  }
}

static int timer_pending(px_timer *t) {
  return t->active || px_queue_linked(&t->source.fired);
}

/* timer:stop() -> true if the timer was still pending (it will not fire
 * again, a queued tick is dropped), false if it had already finished. */
static int timer_stop(lua_State *L) {
  px_timer *t = check_timer(L);
  int was = timer_pending(t);
  timer_detach(t);
  px_dispatcher_poke(&t->timers->dispatcher);
  lua_pushboolean(L, was);
  return 1;
}

static int timer_is_active(lua_State *L) {
  lua_pushboolean(L, timer_pending(check_timer(L)));
  return 1;
}

static int timer_id(lua_State *L) {
  lua_pushnumber(L, check_timer(L)->source.id);
  return 1;
}

static int timer_gc(lua_State *L) {
  px_timer *t = check_timer(L);
  vm_timers *timers = t->timers;
  if (timers == NULL) return 0;
  if (!timers->closing) timer_detach(t);
  t->timers = NULL;
  timers_unref(timers);
  return 0;
}

static int timer_tostring(lua_State *L) {
  px_timer *t = check_timer(L);
  lua_pushfstring(L, "parx.timer (%s)", timer_pending(t) ? "active" : "finished");
  return 1;
}

/* The VM's state is closing: stop and close every list handle; the lists
 * and this struct are freed by the close callbacks and the last timer. */
static int timers_gc(lua_State *L) {
  vm_timers **box = lua_touserdata(L, 1);
  vm_timers *timers = *box;
  if (timers == NULL) return 0;
  *box = NULL;
  timers->closing = 1;
  for (size_t i = 0; i < timers->cap; i++) {
    timer_list *l = timers->lists[i];
    if (l == NULL) continue;
    timers->lists[i] = NULL;
    uv_close((uv_handle_t *)&l->handle, list_close_cb);
  }
  timers_unref(timers);
  return 0;
}

/* active_count() -> timers pending in this VM (for tests and debugging). */
static int timer_active_count(lua_State *L) {
  vm_timers *timers = check_timers(L);
  lua_pushnumber(L, (double)timers->dispatcher.active);
  return 1;
}

static const luaL_Reg timer_methods[] = {
  {"stop", timer_stop}, {"active", timer_is_active}, {"id", timer_id}, {NULL, NULL}};

static const luaL_Reg timer_funcs[] = {
  {"new", timer_new}, {"active_count", timer_active_count}, {NULL, NULL}};

int px_open_timer(lua_State *L) {
  vm_timers *timers = (vm_timers *)px_dispatcher_open(L, sizeof(vm_timers), "timer dispatch",
                                                 push_fired, timer_funcs, timers_gc);
  timers->loop = px_vm_loop(px_vm_of(L));
  timers->refs = 1;
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
  return 1;
}
