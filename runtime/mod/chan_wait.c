/*
 * chan_wait.c -- parked channel operations: the select record (px_sel, one
 * per send, receive, select or host wait) with its scheduler callbacks,
 * and the short spin before parking.  Used by the Lua face (chan.c),
 * parx.select (select.c) and the host (chan_host.c); the channel's queue
 * (chan_queue.c) fires the records without calling in here.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"

/* ---- select records ------------------------------------------------------- */

px_sel *px_sel_new(int kind, int n) {
  px_sel *sel = calloc(1, sizeof *sel + (size_t)n * sizeof(px_entry));
  if (!sel) return NULL;
  atomic_init(&sel->fired, 0);
  atomic_init(&sel->spin, 0);
  sel->kind = kind;
  sel->index = -2;
  sel->n = n;
  for (int i = 0; i < n; i++) {
    sel->cases[i].sel = sel;
    sel->cases[i].index = i;
  }
  return sel;
}

static void free_after_close(uv_handle_t *h) { free(h->data); }

void px_sel_finish(px_sel *sel) {
  for (int i = 0; i < sel->n; i++) {
    px_entry *e = &sel->cases[i];
    if (!e->ch) continue;
    /* The entry that fired was unlinked by the party that fired it (and
     * that party's px_wake orders its writes before ours); any other entry
     * may still sit in its queue, where a concurrent party may be looking
     * at it, so it is unlinked under its channel's lock. */
    if (sel->queued && i != sel->index) {
      px_chan_lock(e->ch);
      if (e->linked) px_chan_unlink_locked(e->ch, e);
      px_chan_unlock(e->ch);
    }
    px_slot_free(&e->val);
    px_shared_release(&e->ch->hdr);
    e->ch = NULL;
  }
  px_slot_free(&sel->got);
  if (sel->has_timer) {
    sel->timer.data = sel;
    uv_close((uv_handle_t *)&sel->timer, free_after_close);
  } else {
    free(sel);
  }
}

/* Push the outcome of a fired sel onto co; returns the count.  Shapes:
 *   recv:   v, true | nil, false | nil, false, err
 *   send:   (nothing) | false                       (false: closed)
 *   select: i, v, ok | i | i, nil, nil, err | nil, "timeout"
 * The Lua face raises when err is present (deliver cannot raise). */
int px_sel_outcome(lua_State *co, px_sel *sel) {
  if (sel->kind == SEL_SEND) {
    if (sel->ok) return 0;
    lua_pushboolean(co, 0);
    return 1;
  }
  int base = 0;
  if (sel->kind == SEL_SELECT) {
    if (sel->index < 0) {
      lua_pushnil(co);
      lua_pushliteral(co, "timeout");
      return 2;
    }
    lua_pushinteger(co, sel->index + 1);
    base = 1;
    if (sel->cases[sel->index].is_send) {
      if (sel->ok) return 1;
      lua_pushnil(co);
      lua_pushnil(co);
      lua_pushliteral(co, "send on closed channel");
      return 4;
    }
  }
  if (!sel->ok) {
    lua_pushnil(co);
    lua_pushboolean(co, 0);
    return base + 2;
  }
  if (px_slot_decode(co, &sel->got) != 0) {
    lua_pushnil(co);
    lua_insert(co, -2);
    lua_pushboolean(co, 0);
    lua_insert(co, -2);
    return base + 3;
  }
  lua_pushboolean(co, 1);
  return base + 2;
}

static int sel_deliver(lua_State *co, px_wait *w) {
  px_sel *sel = (px_sel *)w;
  int n = px_sel_outcome(co, sel);
  px_sel_finish(sel);
  return n;
}

/* A wake arrived for a task that was cancelled meanwhile: undo a receive so
 * the value reaches someone else; a send that happened stays sent. */
static void sel_discard(px_wait *w) {
  px_sel *sel = (px_sel *)w;
  if (sel->index >= 0 && sel->ok && !sel->cases[sel->index].is_send)
    px_chan_unreceive(sel->cases[sel->index].ch, &sel->got); /* a nil is a message too */
  px_sel_finish(sel);
}

static int sel_cancel(px_wait *w) {
  px_sel *sel = (px_sel *)w;
  if (!px_sel_claim(sel)) return 0; /* a wake is under way: discard follows */
  sel->index = -2;
  px_sel_finish(sel);
  return 1;
}

void px_sel_setup_wait(px_sel *sel) {
  static const char *what[] = {"channel recv", "channel send", "select", "host"};
  sel->w.what = what[sel->kind];
  sel->w.on_id = sel->n == 1 && sel->cases[0].ch ? sel->cases[0].ch->trace_id : 0;
  sel->w.deliver = sel_deliver;
  sel->w.discard = sel_discard;
  sel->w.cancel = sel_cancel;
  sel->w.external = 0;
}

/* px_wait_prepare without its raise (a protected call cost a park ~100
 * instructions): the caller frees sel, then px_sel_raise. */
int px_sel_prepare(lua_State *L, px_sel *sel) { return px_wait_try_prepare(L, &sel->w); }

int px_sel_raise(lua_State *L) {
  px_check_can_park(L);
  return luaL_error(L, "cannot wait here");
}

int px_sel_park(lua_State *L, px_sel *sel) { return px_park(L, &sel->w); }

/* ---- spinning before parking ------------------------------------------------ */

/* A wake-up across threads costs a write to the VM's eventfd and an epoll
 * round trip on the other side, 10-30 us; a counterpart running on another
 * worker usually acts sooner than that (a producer's next send, the other
 * end of a ping-pong).  So a task about to park first spins, up to
 * SPIN_NS, watching its sel: a waker that finds it spinning completes the
 * hand-off and swaps sel->spin from 1 to 2 instead of calling px_wake, and
 * the task goes on without ever parking.  Whoever swaps first decides: the
 * task's own swap to 0 when it gives up means a px_wake is coming.
 *
 * Spinning is wasted when the counterpart cannot run meanwhile (an async
 * task of the same VM, an idle producer), so each channel keeps a credit:
 * a spin that ends in a hand-off refills it, one that times out costs one,
 * and at zero only one park in 32 tries spinning again: a futile spin costs
 * SPIN_NS 16 times, then SPIN_NS/32 per park.  Never on one CPU, and never
 * while the VM has another task ready or a wake to deliver: a producer and
 * a consumer on one VM each found the other woken but not yet run, and
 * every 32nd park spun SPIN_NS for nothing (1.5 us a message). */
#define SPIN_NS 50000

int px_chan_should_spin(px_chan *ch, px_vm *vm) {
  /* The counterpart may be a task of this very VM, and so may whatever
   * else is ready: none of them can run while this one spins. */
  if (px_chan_ncpus() < 2 || px_vm_has_work(vm)) return 0;
  if (atomic_load_explicit(&ch->spin_credit, memory_order_relaxed) <= 0 &&
      (atomic_fetch_add_explicit(&ch->spin_probe, 1, memory_order_relaxed) & 31) != 0)
    return 0;
  atomic_fetch_add_explicit(&ch->spins, 1, memory_order_relaxed);
  return 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Before parking, a send on a rendezvous channel (or a receive) waits at
 * its exchange for up to PRESPIN_NS (chan_exchange.c), and a send on a full
 * channel with the lock-free buffer (or a receive on an empty one) retries
 * without the lock for as long:
 * with the counterpart running on another CPU a cell is freed (or filled)
 * within tens of nanoseconds, while a parked party costs the counterpart a
 * lock and a hand-over per value (1e6 numbers through a channel of 1024,
 * the producer the faster, 2-core VM: 5-14 M messages a second parking,
 * 22-24 M without).
 * Only when px_chan_should_spin's conditions hold but its credit (the
 * spin is short): not on one CPU, not with other work ready on the VM. */
#define PRESPIN_NS 2000

int px_chan_prespin(px_chan *ch, int op, px_slot *v, px_vm *vm) {
  if ((!ch->vq && ch->cap != 0) || px_chan_ncpus() < 2 || px_vm_has_work(vm)) return 0;
  int done;
  if (ch->cap == 0) {
    done = px_chan_exchange_wait(ch, op, v, vm, PRESPIN_NS);
  } else {
    uint64_t start = now_ns();
    for (unsigned i = 1;; i++) {
      if ((done = px_chan_try_unlocked(ch, op, v))) break;
      px_cpu_relax();
      if ((i & 15) == 0 && now_ns() - start > PRESPIN_NS) break;
    }
  }
  /* One that spun in vain is counted with the parks that did: not every
   * one, which put a read-modify-write of a line both ends share on every
   * rendezvous. */
  if (!done) atomic_fetch_add_explicit(&ch->spins, 1, memory_order_relaxed);
  return done;
}

/* Spin until a waker completed sel or SPIN_NS passed.  1: completed, no
 * wake-up will come; 0: park (a wake-up will come). */
int px_sel_spin(px_chan *ch, px_sel *sel) {
  uint64_t start = now_ns();
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(&sel->spin, memory_order_acquire) == 2) break;
    px_cpu_relax();
    if ((i & 63) == 0) {
      uint64_t spent = now_ns() - start;
      if (spent > SPIN_NS) break;
      /* Past a few microseconds the counterpart may be waiting for a CPU
       * (more runnable threads than cores): offer ours. */
      if (spent > 3000) sched_yield();
    }
  }
  int done = atomic_exchange(&sel->spin, 0) == 2;
  int credit = atomic_load_explicit(&ch->spin_credit, memory_order_relaxed);
  if (done) credit = 16;
  else if (credit > 0) credit--;
  atomic_store_explicit(&ch->spin_credit, credit, memory_order_relaxed);
  return done;
}

