/*
 * chan.c -- the Lua face of parx.channel (send, recv, try_*, close, #,
 * capacity, iteration helpers) and the module's open function.  The
 * channel itself is chan_queue.c's, parked operations chan_wait.c's,
 * values in flight slot.c's, parx.select select.c's, host access
 * chan_host.c's.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"

static int raise_status(lua_State *L, int r) {
  if (r == -1) return px_error_user(L, "send on closed channel"); /* at the user's line, not chan.lua's */
  return px_oom(L, "channel");
}

/* The slow path of send and recv: prepare, look again (someone may have
 * come while the lock was released), then queue, spin a little, park. */
static int park_op(lua_State *L, px_chan *ch, int kind, px_slot *v) {
  px_sel *sel = px_sel_new(kind, 1);
  if (!sel) {
    if (v) px_slot_free(v);
    return px_oom(L, "channel");
  }
  px_entry *e = &sel->cases[0];
  px_shared_retain(&ch->hdr);
  e->ch = ch;
  e->is_send = kind == SEL_SEND;
  if (v) e->val = *v;
  px_sel_setup_wait(sel);
  if (px_sel_prepare(L, sel) != 0) {
    px_sel_finish(sel);
    return px_sel_raise(L);
  }
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = e->is_send ? px_chan_send_locked(ch, &e->val, &wake)
                     : px_chan_recv_locked(ch, &sel->got, &wake);
  if (r == 0) {
    px_chan_enqueue_locked(ch, e, &wake); /* may fire sel itself */
    sel->queued = 1;
    int spin = px_chan_should_spin(ch, sel->w.vm);
    if (spin) atomic_store_explicit(&sel->spin, 1, memory_order_relaxed);
    px_chan_unlock(ch);
    px_chan_wake_all(wake);
    if (spin && px_sel_spin(ch, sel)) {
      int n = px_sel_outcome(L, sel);
      px_sel_finish(sel);
      return n;
    }
    return px_park(L, &sel->w);
  }
  px_chan_unlock(ch);
  px_chan_wake_from(ch, wake);
  sel->index = 0;
  sel->ok = r == 1;
  if (r < -1 || (r == -1 && e->is_send)) {
    px_sel_finish(sel);
    return raise_status(L, r);
  }
  int n = px_sel_outcome(L, sel);
  px_sel_finish(sel);
  return n;
}

/* ch:send(v) -> nothing, or false when the channel was closed while the
 * sender was parked (the Lua face raises then).  ch:try_send(v) -> whether
 * it was sent, never parking. */
static int send_op(lua_State *L, int park) {
  px_chan *ch = px_chan_check(L, 1);
  px_slot v;
  if (px_slot_encode(L, 2, &v) != 0) return lua_error(L);
  int r = px_chan_try(ch, PX_CHAN_SEND, &v);
  if (r < 0) {
    px_slot_free(&v);
    return raise_status(L, r);
  }
  if (r == 0 && park) {
    if (px_chan_prespin(ch, PX_CHAN_SEND, &v, px_vm_of(L))) return 0;
    return park_op(L, ch, SEL_SEND, &v);
  }
  if (r == 0) px_slot_free(&v);
  if (park) return 0;
  lua_pushboolean(L, r == 1);
  return 1;
}

/* ch:recv() -> v, true | nil, false | nil, false, err (unmarshal failed).
 * ch:try_recv() -> v, true | nil, false, never parking. */
static int recv_op(lua_State *L, int park) {
  px_chan *ch = px_chan_check(L, 1);
  px_slot v;
  int r = px_chan_try(ch, PX_CHAN_RECV, &v);
  if (r == 0 && park && px_chan_prespin(ch, PX_CHAN_RECV, &v, px_vm_of(L))) r = 1;
  if (r == 1) {
    if (px_slot_decode(L, &v) != 0) return lua_error(L);
    lua_pushboolean(L, 1);
    return 2;
  }
  if (r == 0 && park) return park_op(L, ch, SEL_RECV, NULL);
  lua_pushnil(L);
  lua_pushboolean(L, 0);
  return 2;
}

static int l_send(lua_State *L) { return send_op(L, 1); }
static int l_try_send(lua_State *L) { return send_op(L, 0); }
static int l_recv(lua_State *L) { return recv_op(L, 1); }
static int l_try_recv(lua_State *L) { return recv_op(L, 0); }

/* Close: every parked receiver gets nil, false; every parked sender fails.
 * Buffered values stay for receivers to drain.  Closing twice is allowed and
 * returns false (a pipeline stage and its error path may both close). */
static int l_close(lua_State *L) {
  lua_pushboolean(L, px_chan_close(px_chan_check(L, 1)));
  return 1;
}

/* The count of buffered values and whether ch is closed, at one moment. */
static px_chan *snapshot(lua_State *L, size_t *count, int *closed) {
  px_chan *ch = px_chan_check(L, 1);
  px_chan_lock(ch);
  *count = px_chan_len_locked(ch);
  *closed = ch->closed;
  px_chan_unlock(ch);
  return ch;
}

static int l_len(lua_State *L) {
  size_t n;
  int closed;
  snapshot(L, &n, &closed);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int l_capacity(lua_State *L) {
  px_chan *ch = px_chan_check(L, 1);
  if (ch->cap < 0) lua_pushnumber(L, HUGE_VAL);
  else lua_pushnumber(L, (lua_Number)ch->cap);
  return 1;
}

static int l_closed(lua_State *L) {
  size_t n;
  int closed;
  snapshot(L, &n, &closed);
  lua_pushboolean(L, closed);
  return 1;
}

static int l_tostring(lua_State *L) {
  size_t n;
  int closed;
  px_chan *ch = snapshot(L, &n, &closed);
  if (ch->cap < 0)
    lua_pushfstring(L, "parx.channel(unbounded, %f queued%s): %p", (double)n, closed ? ", closed" : "",
                    (void *)ch);
  else
    lua_pushfstring(L, "parx.channel(%f, %f queued%s): %p", (double)ch->cap, (double)n,
                    closed ? ", closed" : "", (void *)ch);
  return 1;
}

/* live() -> channels alive in the process, all VMs (a debug counter). */
static int l_live(lua_State *L) {
  lua_pushnumber(L, (lua_Number)px_chan_live());
  return 1;
}

/* spins(ch) -> how many parks on ch spun first (a debug counter). */
static int l_spins(lua_State *L) {
  px_chan *ch = (px_chan *)px_shared_check(L, 1, &px_chan_type);
  lua_pushnumber(L, (lua_Number)atomic_load_explicit(&ch->spins, memory_order_relaxed));
  return 1;
}

/* parx.channel([capacity]): none or math.huge = unbounded, 0 = rendezvous. */
static int l_new(lua_State *L) {
  long cap = -1;
  if (!lua_isnoneornil(L, 1)) {
    double c = luaL_checknumber(L, 1);
    if (c < 0) return luaL_argerror(L, 1, "capacity must be >= 0");
    if (c != floor(c)) return luaL_argerror(L, 1, "capacity must be an integer");
    /* Any capacity a Lua number holds exactly is kept as it is (the buffer
     * grows lazily); beyond 2^53 only math.huge, which means unbounded. */
    if (c <= 9007199254740992.0) cap = (long)c;
    else if (c != HUGE_VAL)
      return luaL_argerror(L, 1, "capacity must be at most 2^53 (math.huge: unbounded)");
  }
  px_chan *ch = px_chan_new(cap);
  if (!ch) return px_oom(L, "channel");
  px_shared_push(L, &ch->hdr);
  return 1;
}

int px_open_chan(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"send", l_send},         {"recv", l_recv},     {"try_send", l_try_send},
    {"try_recv", l_try_recv}, {"close", l_close},   {"capacity", l_capacity},
    {"closed", l_closed},     {"__len", l_len},     {"__tostring", l_tostring},
    {NULL, NULL}};
  px_shared_register(&px_chan_type);
  lua_newtable(L);
  px_shared_meta(L, &px_chan_type);
  for (const luaL_Reg *r = methods; r->name; r++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, r->func, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, r->name); /* module table: the raw C functions */
    lua_setfield(L, -2, r->name); /* metatable: methods until chan.lua wraps */
  }
  lua_pushcclosure(L, px_chan_select, 1); /* upvalue: the metatable */
  lua_setfield(L, -2, "select");
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, l_live);
  lua_setfield(L, -2, "live");
  lua_pushcfunction(L, l_spins);
  lua_setfield(L, -2, "spins");
  luaL_getmetatable(L, px_chan_type.name);
  lua_setfield(L, -2, "metatable");
  lua_pushlightuserdata(L, (void *)px_chan_fast_api());
  lua_setfield(L, -2, "fast_api");
  lua_pushinteger(L, SLOT_INLINE);
  lua_setfield(L, -2, "fast_inline"); /* chan.lua checks its cdef */
  return 1;
}
