/*
 * chan.c -- channels: the queue, parked parties, and the Lua face of
 * parx.channel (values in flight are in slot.c, parx.select in select.c,
 * host access in chan_host.c).
 *
 * See chan.h for the design.  The invariants, all under ch->lock:
 *   - receivers wait only while the buffer is empty and the channel open;
 *   - senders wait only while the buffer is full (always, for capacity 0);
 *   - an entry in a queue may be stale (its sel fired through another case);
 *     whoever pops it drops it.
 * So a receive first takes from the buffer and then refills it from the
 * first parked sender (keeping FIFO order), and a send hands its value
 * straight to the first parked receiver (Go's direct hand-off): a busy
 * consumer that never empties the buffer is never woken, and one wake-up of
 * a parked consumer is followed by a whole buffer's worth of receives that
 * need no wake-up.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"

/* ---- the ring buffer ------------------------------------------------------ */

/* Grow to hold at least one more slot.  Bounded channels grow lazily up to
 * their capacity, so parx.channel(1e6) costs nothing until it fills. */
static int ring_grow(px_chan *ch) {
  size_t size = ch->ringsize ? ch->ringsize * 2 : 16;
  if (ch->cap > 0 && size > (size_t)ch->cap && (size_t)ch->cap > ch->count)
    size = (size_t)ch->cap;
  px_slot *ring = malloc(size * sizeof *ring);
  if (!ring) return -1;
  for (size_t i = 0; i < ch->count; i++)
    ring[i] = ch->ring[(ch->head + i) % ch->ringsize];
  free(ch->ring);
  ch->ring = ring;
  ch->ringsize = size;
  ch->head = 0;
  return 0;
}

/* A buffered message that holds its own channel.
 *
 * `c:send(c)` on a buffered channel leaves a message in c's buffer that
 * holds a reference to c: counted like any other, it would keep c alive
 * after every proxy is gone, and c, its buffer and everything in it would
 * never be freed (a reference cycle; 200,000 such channels were 350 MB).
 * So while a message sits in its channel's buffer, its references to that
 * channel are not counted: ring_push gives them back (never the last one:
 * whoever pushes holds a reference of its own) and ring_pop takes them
 * again before anyone can unmarshal the message.  When the last counted
 * reference goes, chan_free frees the buffer without releasing them.
 * Longer cycles (a in b's buffer, b in a's) are still not collected: the
 * README says so.  A message holds at most one reference per proxy it
 * met, so more than 255 to one channel is a pathological case; those
 * beyond 255 stay counted (the channel then leaks, as before). */
static void weaken_self(px_chan *ch, px_slot *v) {
  if (v->tag != SLOT_MSG) return; /* (weak_self shares a byte with len) */
  v->weak_self = 0;
  px_msg *m = v->u.msg;
  int n = 0;
  for (int i = 0; i < m->nrefs && n < 255; i++)
    if (m->refs[i] == &ch->hdr) n++;
  if (n) {
    long before = atomic_fetch_sub_explicit(&ch->hdr.refs, n, memory_order_relaxed);
    assert(before > n); /* the pusher's own reference remains */
    (void)before;
  }
  v->weak_self = (uint8_t)n;
}

static void strengthen_self(px_chan *ch, px_slot *v) {
  if (v->tag != SLOT_MSG) return;
  if (v->weak_self)
    atomic_fetch_add_explicit(&ch->hdr.refs, v->weak_self, memory_order_relaxed);
  v->weak_self = 0;
}

static int ring_push(px_chan *ch, px_slot *v) {
  if (ch->count == ch->ringsize && ring_grow(ch) != 0) return -1;
  size_t tail = ch->head + ch->count;
  if (tail >= ch->ringsize) tail -= ch->ringsize;
  weaken_self(ch, v);
  ch->ring[tail] = *v;
  ch->count++;
  v->tag = SLOT_NIL;
  return 0;
}

/* Put a value back at the head (a receiver was cancelled after the value
 * was handed to it); may exceed the capacity by one. */
static int ring_push_front(px_chan *ch, px_slot *v) {
  if (ch->count == ch->ringsize && ring_grow(ch) != 0) return -1;
  ch->head = ch->head ? ch->head - 1 : ch->ringsize - 1;
  weaken_self(ch, v);
  ch->ring[ch->head] = *v;
  ch->count++;
  v->tag = SLOT_NIL;
  return 0;
}

/* The popper holds a reference to ch, so the ones given back are safe. */
static void ring_pop(px_chan *ch, px_slot *out) {
  *out = ch->ring[ch->head];
  if (++ch->head == ch->ringsize) ch->head = 0;
  ch->count--;
  strengthen_self(ch, out);
}

/* ---- wait queues ---------------------------------------------------------- */

void px_chan_enqueue_locked(px_chan *ch, px_entry *e) {
  px_waitq *q = e->is_send ? &ch->sendq : &ch->recvq;
  e->next = NULL;
  e->prev = q->last;
  if (q->last) q->last->next = e;
  else q->first = e;
  q->last = e;
  e->linked = 1;
}

void px_chan_unlink_locked(px_chan *ch, px_entry *e) {
  px_waitq *q = e->is_send ? &ch->sendq : &ch->recvq;
  if (e->prev) e->prev->next = e->next;
  else q->first = e->next;
  if (e->next) e->next->prev = e->prev;
  else q->last = e->prev;
  e->prev = e->next = NULL;
  e->linked = 0;
}

/* The first parked party of q that can still fire, unlinked and claimed;
 * stale entries are dropped on the way. */
static px_entry *claim_first(px_chan *ch, px_waitq *q) {
  px_entry *e;
  while ((e = q->first)) {
    px_chan_unlink_locked(ch, e);
    if (px_sel_claim(e->sel)) return e;
  }
  return NULL;
}

static void fired(px_entry *e, int ok, px_sel **wake) {
  px_sel *sel = e->sel;
  sel->index = e->index;
  sel->ok = ok;
  sel->wake_next = *wake;
  *wake = sel;
}

int px_chan_send_locked(px_chan *ch, px_slot *v, px_sel **wake) {
  if (ch->closed) return -1;
  px_entry *e = claim_first(ch, &ch->recvq);
  if (e) {
    e->sel->got = *v;
    v->tag = SLOT_NIL;
    fired(e, 1, wake);
    return 1;
  }
  if (ch->cap < 0 || ch->count < (size_t)ch->cap) return ring_push(ch, v) == 0 ? 1 : -2;
  return 0;
}

int px_chan_recv_locked(px_chan *ch, px_slot *out, px_sel **wake) {
  if (ch->count) {
    ring_pop(ch, out);
    px_entry *e = claim_first(ch, &ch->sendq);
    if (e) {
      ring_push(ch, &e->val); /* cannot fail: a slot was just freed */
      fired(e, 1, wake);
    }
    return 1;
  }
  px_entry *e = claim_first(ch, &ch->sendq);
  if (e) {
    *out = e->val;
    e->val.tag = SLOT_NIL;
    fired(e, 1, wake);
    return 1;
  }
  return ch->closed ? -1 : 0;
}

/* Give back a value a cancelled receiver was handed: to the next parked
 * receiver, else to the head of the buffer, so no message is lost. */
static void unreceive(px_chan *ch, px_slot *v) {
  px_sel *wake = NULL;
  px_chan_lock(ch);
  px_entry *e = claim_first(ch, &ch->recvq);
  if (e) {
    e->sel->got = *v;
    v->tag = SLOT_NIL;
    fired(e, 1, &wake);
  } else if (ring_push_front(ch, v) != 0) {
    px_slot_free(v); /* out of memory: the value is lost */
  }
  px_chan_unlock(ch);
  px_chan_wake_all(wake);
}

void px_chan_wake_all(px_sel *list) {
  while (list) {
    px_sel *next = list->wake_next; /* list may be freed once woken */
    if (list->kind == SEL_HOST) {
      pthread_mutex_lock(list->host_lock);
      list->host_done = 1;
      pthread_cond_signal(list->host_cond);
      pthread_mutex_unlock(list->host_lock);
    } else if (atomic_load_explicit(&list->spin, memory_order_acquire) == 0 ||
               atomic_exchange(&list->spin, 2) != 1) {
      px_wake(&list->w);
    } /* else the owner is still spinning: it sees 2 and needs no wake */
    list = next;
  }
}

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

int px_sel_claim(px_sel *sel) {
  int expected = 0;
  return atomic_compare_exchange_strong_explicit(&sel->fired, &expected, 1, memory_order_acq_rel,
                                                 memory_order_acquire);
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
    unreceive(sel->cases[sel->index].ch, &sel->got); /* a nil is a message too */
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
  sel->w.deliver = sel_deliver;
  sel->w.discard = sel_discard;
  sel->w.cancel = sel_cancel;
  sel->w.external = 0;
}

static int prepare_call(lua_State *L) {
  px_wait_prepare(L, lua_touserdata(L, 1));
  return 0;
}

/* px_wait_prepare raises when the task cannot park; catch that so the sel
 * is freed instead of leaked.  Returns 0, or -1 with the error pushed. */
static int prepare_protected(lua_State *L, px_sel *sel) {
  lua_pushcfunction(L, prepare_call);
  lua_pushlightuserdata(L, &sel->w);
  return lua_pcall(L, 1, 0, 0) == 0 ? 0 : -1;
}

int px_sel_park(lua_State *L, px_sel *sel) { return px_park(L, &sel->w); }

/* ---- channels --------------------------------------------------------------- */

static atomic_long live_channels;

long px_chan_live(void) { return atomic_load_explicit(&live_channels, memory_order_relaxed); }

/* The last counted reference went: free what is buffered, except the
 * uncounted references its messages hold to ch itself (see weaken_self). */
static void chan_free(px_shared *obj) {
  px_chan *ch = (px_chan *)obj;
  while (ch->count) {
    px_slot v = ch->ring[ch->head];
    if (++ch->head == ch->ringsize) ch->head = 0;
    ch->count--;
    if (v.tag == SLOT_MSG && v.weak_self) {
      px_msg *m = v.u.msg;
      int kept = 0, dropped = 0;
      for (int i = 0; i < m->nrefs; i++) {
        if (m->refs[i] == obj && dropped < v.weak_self) dropped++;
        else m->refs[kept++] = m->refs[i];
      }
      m->nrefs = kept;
    }
    px_slot_free(&v);
  }
  free(ch->ring);
  free(ch);
  atomic_fetch_sub_explicit(&live_channels, 1, memory_order_relaxed);
}

px_shared_type px_chan_type = {"parx.channel", chan_free, px_chan_push, 0};

px_chan *px_chan_new(long cap) {
  px_shared_register(&px_chan_type);
  px_chan *ch = calloc(1, sizeof *ch);
  if (!ch) return NULL;
  px_shared_init(&ch->hdr, &px_chan_type);
  atomic_init(&ch->lock, 0);
  ch->cap = cap;
  atomic_init(&ch->spin_credit, 4);
  atomic_init(&ch->spin_probe, 0);
  atomic_fetch_add_explicit(&live_channels, 1, memory_order_relaxed);
  return ch;
}

void px_chan_push(lua_State *L, px_shared *obj) {
  /* The methods are installed by lua/parx/chan.lua: load it in this VM
   * first if a channel arrives here before anyone required it. */
  luaL_getmetatable(L, px_chan_type.name);
  int ready = 0;
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "__parx_ready");
    ready = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!ready) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "parx.chan");
    if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1); /* bare metatable then */
  }
  px_shared_push(L, obj);
}

/* Methods are closures whose first upvalue is the metatable, so the check
 * is one metatable comparison instead of a registry lookup by name.  The
 * proxy userdata holds the object pointer (core/shared.c); __gc clears it. */
px_chan *px_chan_check(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same && *(px_chan **)p) return *(px_chan **)p;
  }
  return (px_chan *)px_shared_check(L, idx, &px_chan_type);
}

static int raise_status(lua_State *L, int r) {
  if (r == -1) return luaL_error(L, "send on closed channel");
  return px_oom(L, "channel");
}

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
 * SPIN_NS 16 times, then SPIN_NS/32 per park.  Never on one CPU. */
#define SPIN_NS 50000

static int ncpus(void) {
  static atomic_int n;
  int v = atomic_load_explicit(&n, memory_order_relaxed);
  if (!v) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    v = c > 0 ? (int)c : 1;
    atomic_store_explicit(&n, v, memory_order_relaxed);
  }
  return v;
}

int px_chan_should_spin(px_chan *ch) {
  if (ncpus() < 2) return 0;
  if (atomic_load_explicit(&ch->spin_credit, memory_order_relaxed) > 0) return 1;
  return (atomic_fetch_add_explicit(&ch->spin_probe, 1, memory_order_relaxed) & 31) == 0;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* Wake what an operation of L's task fired.  A parked party on the same VM
 * cannot have been spinning for this hand-off (one thread runs both), and
 * will not be next time either: spinning on this channel is futile for
 * now, so its credit goes to zero.  A later spin that succeeds (a party on
 * another worker) refills it. */
static void wake_from(lua_State *L, px_chan *ch, px_sel *wake) {
  if (!wake) return;
  px_vm *vm = px_vm_of(L);
  for (px_sel *s = wake; s; s = s->wake_next)
    if (s->kind != SEL_HOST && s->w.vm == vm)
      atomic_store_explicit(&ch->spin_credit, 0, memory_order_relaxed);
  px_chan_wake_all(wake);
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
  if (prepare_protected(L, sel) != 0) {
    px_sel_finish(sel);
    return lua_error(L);
  }
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = e->is_send ? px_chan_send_locked(ch, &e->val, &wake)
                     : px_chan_recv_locked(ch, &sel->got, &wake);
  if (r == 0) {
    px_chan_enqueue_locked(ch, e);
    sel->queued = 1;
    int spin = px_chan_should_spin(ch);
    if (spin) atomic_store_explicit(&sel->spin, 1, memory_order_relaxed);
    px_chan_unlock(ch);
    if (spin && px_sel_spin(ch, sel)) {
      int n = px_sel_outcome(L, sel);
      px_sel_finish(sel);
      return n;
    }
    return px_park(L, &sel->w);
  }
  px_chan_unlock(ch);
  wake_from(L, ch, wake);
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
 * sender was parked (the Lua face raises then). */
static int l_send(lua_State *L) {
  px_chan *ch = px_chan_check(L, 1);
  px_slot v;
  if (px_slot_encode(L, 2, &v) != 0) return lua_error(L);
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = px_chan_send_locked(ch, &v, &wake);
  px_chan_unlock(ch);
  if (r == 1) {
    wake_from(L, ch, wake);
    return 0;
  }
  if (r < 0) {
    px_slot_free(&v);
    return raise_status(L, r);
  }
  return park_op(L, ch, SEL_SEND, &v);
}

/* ch:recv() -> v, true | nil, false | nil, false, err (unmarshal failed). */
static int l_recv(lua_State *L) {
  px_chan *ch = px_chan_check(L, 1);
  px_slot v;
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = px_chan_recv_locked(ch, &v, &wake);
  px_chan_unlock(ch);
  if (r == 1) {
    wake_from(L, ch, wake);
    if (px_slot_decode(L, &v) != 0) return lua_error(L);
    lua_pushboolean(L, 1);
    return 2;
  }
  if (r < 0) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  return park_op(L, ch, SEL_RECV, NULL);
}

static int l_try_send(lua_State *L) {
  px_chan *ch = px_chan_check(L, 1);
  px_slot v;
  if (px_slot_encode(L, 2, &v) != 0) return lua_error(L);
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = px_chan_send_locked(ch, &v, &wake);
  px_chan_unlock(ch);
  wake_from(L, ch, wake);
  if (r < 0) {
    px_slot_free(&v);
    return raise_status(L, r);
  }
  if (r == 0) px_slot_free(&v);
  lua_pushboolean(L, r == 1);
  return 1;
}

static int l_try_recv(lua_State *L) {
  px_chan *ch = px_chan_check(L, 1);
  px_slot v;
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = px_chan_recv_locked(ch, &v, &wake);
  px_chan_unlock(ch);
  wake_from(L, ch, wake);
  if (r == 1) {
    if (px_slot_decode(L, &v) != 0) return lua_error(L);
    lua_pushboolean(L, 1);
    return 2;
  }
  lua_pushnil(L);
  lua_pushboolean(L, 0);
  return 2;
}

/* Close: every parked receiver gets nil, false; every parked sender fails.
 * Buffered values stay for receivers to drain.  Closing twice is allowed and
 * returns false (a pipeline stage and its error path may both close). */
int px_chan_close(px_chan *ch) {
  px_sel *wake = NULL;
  px_chan_lock(ch);
  if (ch->closed) {
    px_chan_unlock(ch);
    return 0;
  }
  ch->closed = 1;
  px_entry *e;
  while ((e = claim_first(ch, &ch->recvq))) fired(e, 0, &wake);
  while ((e = claim_first(ch, &ch->sendq))) fired(e, 0, &wake);
  px_chan_unlock(ch);
  px_chan_wake_all(wake);
  return 1;
}

static int l_close(lua_State *L) {
  lua_pushboolean(L, px_chan_close(px_chan_check(L, 1)));
  return 1;
}

static int l_len(lua_State *L) {
  px_chan *ch = px_chan_check(L, 1);
  px_chan_lock(ch);
  size_t n = ch->count;
  px_chan_unlock(ch);
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
  px_chan *ch = px_chan_check(L, 1);
  px_chan_lock(ch);
  int closed = ch->closed;
  px_chan_unlock(ch);
  lua_pushboolean(L, closed);
  return 1;
}

static int l_tostring(lua_State *L) {
  px_chan *ch = px_chan_check(L, 1);
  px_chan_lock(ch);
  size_t n = ch->count;
  int closed = ch->closed;
  px_chan_unlock(ch);
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
  luaL_getmetatable(L, px_chan_type.name);
  lua_setfield(L, -2, "metatable");
  return 1;
}
