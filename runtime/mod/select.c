/*
 * select.c -- parx.select(cases, {timeout = s}) over channels.
 *
 * First a fast pass that allocates nothing: try the cases one channel lock
 * at a time, starting at a random one (fairness: no case starves however
 * often the others are ready).  If none can proceed, do as Go's selectgo:
 * lock every channel of the cases (in address order, so two selects never
 * deadlock; every other path holds one channel lock at a time), poll again,
 * and if still none can proceed, queue one entry per case and park.  The entries share the sel's `fired` flag, so
 * whichever counterpart (or the timeout timer) claims it first wins and the
 * others drop their stale entries.  A timeout of 0 never parks.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan.h"

/* Per-thread xorshift for the poll order: only needs to be cheap and not
 * correlated between threads. */
static _Thread_local uint32_t rng_state;

static uint32_t next_random(void) {
  uint32_t x = rng_state;
  if (x == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    x = (uint32_t)ts.tv_nsec ^ (uint32_t)(uintptr_t)&rng_state ^ 0x9e3779b9u;
    if (x == 0) x = 1;
  }
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  rng_state = x;
  return x;
}

static int cmp_chan(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (px_chan *const *)a, y = (uintptr_t) * (px_chan *const *)b;
  return (x > y) - (x < y);
}

typedef struct lockset {
  px_chan **chans;
  int n;
} lockset;

static void lock_all(lockset *ls) {
  for (int i = 0; i < ls->n; i++) px_chan_lock(ls->chans[i]);
}

static void unlock_all(lockset *ls) {
  for (int i = ls->n - 1; i >= 0; i--) px_chan_unlock(ls->chans[i]);
}

/* Poll the cases once, all locks held.  Returns the case that fired (with
 * sel->index and sel->ok set) or -1; -2 when out of memory. */
static int poll_cases(px_sel *sel, px_sel **wake) {
  int n = sel->n;
  int start = (int)(next_random() % (uint32_t)n);
  for (int k = 0; k < n; k++) {
    int j = start + k < n ? start + k : start + k - n;
    px_entry *e = &sel->cases[j];
    int r = e->is_send ? px_chan_send_locked(e->ch, &e->val, wake)
                       : px_chan_recv_locked(e->ch, &sel->got, wake);
    if (r == -2) return -2;
    if (r != 0) {
      sel->index = j;
      sel->ok = r == 1;
      return j;
    }
  }
  return -1;
}

static void timer_cb(uv_timer_t *t) {
  px_sel *sel = t->data;
  if (px_sel_claim(sel)) {
    sel->index = -1;
    px_wake(&sel->w);
  }
}

/* A case, checked: its channel and direction. */
typedef struct scase {
  px_chan *ch;
  int is_send;
} scase;

/* The channel at idx or NULL.  px_chan_select is a closure whose upvalue
 * is the channel metatable (chan_queue.c), so this is one comparison. */
static px_chan *test_chan(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (!p || !lua_getmetatable(L, idx)) return NULL;
  int same = lua_rawequal(L, -1, lua_upvalueindex(1));
  lua_pop(L, 1);
  return same ? *(px_chan **)p : NULL;
}

/* Results when a case fired without parking; raises on a send to a closed
 * channel or a value that cannot be unmarshalled. */
static int push_now(lua_State *L, px_sel *sel) {
  px_entry *e = &sel->cases[sel->index];
  lua_pushinteger(L, sel->index + 1);
  if (e->is_send) {
    if (!sel->ok) {
      int index = sel->index;
      px_sel_finish(sel);
      return luaL_error(L, "send on closed channel (select case %d)", index + 1);
    }
    px_sel_finish(sel);
    return 1;
  }
  if (!sel->ok) {
    px_sel_finish(sel);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 3;
  }
  int bad = px_slot_decode(L, &sel->got);
  px_sel_finish(sel);
  if (bad) return lua_error(L);
  lua_pushboolean(L, 1);
  return 3;
}

/* select(cases, timeout) -> i, v, ok | i | nil, "timeout" | (parked: see
 * px_sel_outcome in chan_wait.c).  timeout: nil waits forever, 0 never parks. */
int px_chan_select(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double timeout = -1;
  if (!lua_isnoneornil(L, 2)) {
    timeout = luaL_checknumber(L, 2);
    if (!(timeout >= 0)) return luaL_argerror(L, 2, "timeout must be >= 0");
    /* math.huge (and anything past 100,000 years) means no limit: no timer,
     * so a select that can never fire is still reported as a deadlock. */
    if (timeout > 3e12) timeout = -1;
  }
  int n = (int)lua_objlen(L, 1);
  if (n == 0 && timeout < 0) return px_error_user(L, "select with no cases and no timeout would wait forever");

  /* Check every case before any fires, noting its channel and direction
   * (on the C stack, or in a userdata that the GC takes back if a check
   * raises). */
  scase stack_cases[16];
  scase *cs = n <= 16 ? stack_cases : lua_newuserdata(L, (size_t)n * sizeof *cs);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!lua_istable(L, -1)) return px_error_user(L, "select case %d: table expected, got %s", i, luaL_typename(L, -1));
    lua_rawgeti(L, -1, 1);
    px_chan *ch = test_chan(L, -1);
    if (!ch) return px_error_user(L, "select case %d: channel expected, got %s", i, luaL_typename(L, -1));
    lua_rawgeti(L, -2, 2);
    size_t len = 0;
    const char *op = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int is_send = op && len == 4 && memcmp(op, "send", 4) == 0;
    if (!is_send && !(op && len == 4 && memcmp(op, "recv", 4) == 0))
      return px_error_user(L, "select case %d: operation must be \"recv\" or \"send\"", i);
    lua_pop(L, 3);
    cs[i - 1].ch = ch;
    cs[i - 1].is_send = is_send;
  }

  /* Fast pass, one channel lock at a time and nothing allocated: try the
   * cases starting at a random one; the first that can proceed fires.  (Only
   * queueing on several channels needs them all locked at once.) */
  int start = n ? (int)(next_random() % (uint32_t)n) : 0;
  for (int k = 0; k < n; k++) {
    int i = (start + k < n ? start + k : start + k - n) + 1;
    px_chan *ch = cs[i - 1].ch;
    int is_send = cs[i - 1].is_send;
    px_slot v;
    int r;
    if (is_send) {
      lua_rawgeti(L, 1, i);
      lua_rawgeti(L, -1, 3);
      if (px_slot_encode(L, -1, &v) != 0) return lua_error(L);
      r = px_chan_try(ch, PX_CHAN_SEND, &v);
      lua_pop(L, 2);
      if (r != 1) px_slot_free(&v);
      if (r == -1) return px_error_user(L, "send on closed channel (select case %d)", i);
    } else {
      r = px_chan_try(ch, PX_CHAN_RECV, &v);
    }
    if (r == -2) return px_oom(L, "select");
    if (r == 0) continue;
    lua_pushinteger(L, i);
    if (is_send) return 1;
    if (r < 0) {
      lua_pushnil(L);
      lua_pushboolean(L, 0);
      return 3;
    }
    if (px_slot_decode(L, &v) != 0) return lua_error(L);
    lua_pushboolean(L, 1);
    return 3;
  }
  if (timeout == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }

  px_sel *sel = px_sel_new(SEL_SELECT, n);
  px_chan *stack_chans[16];
  px_chan **chans = n <= 16 ? stack_chans : malloc((size_t)n * sizeof *chans);
  if (!sel || !chans) {
    free(sel);
    if (chans != stack_chans) free(chans);
    return px_oom(L, "select");
  }
  int bad = 0;
  for (int i = 0; i < n; i++) {
    px_entry *e = &sel->cases[i];
    e->ch = cs[i].ch;
    px_shared_retain(&e->ch->hdr);
    chans[i] = e->ch;
    e->is_send = cs[i].is_send;
    if (e->is_send) {
      lua_rawgeti(L, 1, i + 1);
      lua_rawgeti(L, -1, 3);
      if (px_slot_encode(L, -1, &e->val) != 0) {
        lua_replace(L, 1); /* keep the message */
        bad = 1;
        lua_pop(L, 1);
        break;
      }
      lua_pop(L, 2);
    }
  }
  if (bad) {
    px_sel_finish(sel);
    if (chans != stack_chans) free(chans);
    lua_settop(L, 1);
    return lua_error(L);
  }

  /* Unique channels in address order. */
  qsort(chans, (size_t)n, sizeof *chans, cmp_chan);
  int m = 0;
  for (int i = 0; i < n; i++)
    if (m == 0 || chans[m - 1] != chans[i]) chans[m++] = chans[i];
  lockset ls = {chans, m};

  /* Nothing was ready: prepare to park (may raise: free first), look again
   * with every lock held, then queue every case. */
  px_sel_setup_wait(sel);
  if (px_sel_prepare(L, sel) != 0) {
    px_sel_finish(sel);
    if (chans != stack_chans) free(chans);
    return px_sel_raise(L);
  }
  px_sel *wake = NULL;
  int fired = -1;
  if (n > 0) {
    lock_all(&ls);
    fired = poll_cases(sel, &wake);
    if (fired == -1) {
      for (int i = 0; i < n; i++) px_chan_enqueue_locked(sel->cases[i].ch, &sel->cases[i], &wake);
      sel->queued = 1;
      /* Spin before parking, as send and recv do (chan_wait.c); the first
       * case's channel keeps the credit. */
      if (px_chan_should_spin(sel->cases[0].ch, sel->w.vm)) atomic_store(&sel->spin, 1);
    }
    unlock_all(&ls);
    px_chan_wake_all(wake);
  }
  if (chans != stack_chans) free(chans);
  if (fired == -2) {
    px_sel_finish(sel);
    return px_oom(L, "select");
  }
  if (fired >= 0) return push_now(L, sel);
  if (atomic_load_explicit(&sel->spin, memory_order_relaxed) && px_sel_spin(sel->cases[0].ch, sel)) {
    int nres = px_sel_outcome(L, sel);
    px_sel_finish(sel);
    return nres;
  }
  if (timeout > 0) {
    /* The timer runs on this VM's loop, so its callback cannot run before
     * the task has yielded. */
    uv_loop_t *loop = px_vm_loop(px_vm_of(L));
    uv_update_time(loop); /* the cached loop time may be stale: tasks ran */
    uv_timer_init(loop, &sel->timer);
    sel->timer.data = sel;
    sel->has_timer = 1;
    double ms = ceil(timeout * 1000.0);
    uv_timer_start(&sel->timer, timer_cb, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
  }
  return px_sel_park(L, sel);
}
