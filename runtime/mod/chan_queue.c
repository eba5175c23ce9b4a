/*
 * chan_queue.c -- a channel: its ring buffer and the queues of parked
 * parties, the operations under its lock, creation, close and free.  The
 * parked records themselves are chan_wait.c's, the Lua face chan.c's.
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
#include <linux/futex.h>
#include <sys/syscall.h>

#include "chan.h"
#include "sync.h"

/* ---- the lock's slow path (chan.h says why it spins, then sleeps) --------- */

/* Spin this many times, re-reading the lock, before sleeping: a critical
 * section is shorter than one round, unless its holder was preempted, and
 * then spinning longer only delays the holder's CPU time.  A sleeper
 * re-checks after LOCK_NAP_NS even if no release woke it (chan.h). */
#define LOCK_SPINS 64
#define LOCK_NAP_NS 200000

void px_chan_lock_contended(px_chan *ch) {
  for (;;) {
    for (int i = 0; i < LOCK_SPINS; i++) {
      int expected = 0;
      if (atomic_load_explicit(&ch->lock, memory_order_relaxed) == 0 &&
          atomic_compare_exchange_weak_explicit(&ch->lock, &expected, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return;
      px_cpu_relax();
    }
    atomic_fetch_add_explicit(&ch->lock_sleepers, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&ch->lock, memory_order_seq_cst) != 0) {
      struct timespec nap = {0, LOCK_NAP_NS};
      syscall(SYS_futex, (int *)&ch->lock, FUTEX_WAIT_PRIVATE, 1, &nap, NULL, 0);
    }
    atomic_fetch_sub_explicit(&ch->lock_sleepers, 1, memory_order_relaxed);
  }
}

void px_chan_unlock_wake(px_chan *ch) {
  syscall(SYS_futex, (int *)&ch->lock, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

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
 * stale entries are dropped on the way.  plain_only (a receive of the FFI
 * path, chan_fast.c): stop, leaving the queue as it is, at an entry whose
 * value is not a plain scalar. */
static px_entry *claim_first(px_chan *ch, px_waitq *q, int plain_only) {
  px_entry *e;
  while ((e = q->first)) {
    if (plain_only && !px_slot_is_plain(&e->val)) return NULL;
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
  px_entry *e = claim_first(ch, &ch->recvq, 0);
  if (e) {
    e->sel->got = *v;
    v->tag = SLOT_NIL;
    fired(e, 1, wake);
    px_trace_chan_handoff(ch->trace_id, ++ch->nsent, ++ch->nrecv, e->sel->w.vm);
    return 1;
  }
  if (ch->cap < 0 || ch->count < (size_t)ch->cap) {
    if (ring_push(ch, v) != 0) return -2;
    px_trace_chan_sent(ch->trace_id, ++ch->nsent);
    return 1;
  }
  return 0;
}

static int recv_locked(px_chan *ch, px_slot *out, px_sel **wake, int plain_only) {
  if (ch->count) {
    if (plain_only && !px_slot_is_plain(&ch->ring[ch->head])) return 0;
    ring_pop(ch, out);
    px_trace_chan_received(ch->trace_id, ++ch->nrecv);
    px_entry *e = claim_first(ch, &ch->sendq, 0);
    if (e) {
      ring_push(ch, &e->val); /* cannot fail: a slot was just freed */
      fired(e, 1, wake);
      ch->nsent++;
    }
    return 1;
  }
  px_entry *e = claim_first(ch, &ch->sendq, plain_only);
  if (e) {
    *out = e->val;
    e->val.tag = SLOT_NIL;
    fired(e, 1, wake);
    ch->nsent++;
    px_trace_chan_received(ch->trace_id, ++ch->nrecv);
    return 1;
  }
  return ch->closed ? -1 : 0;
}

int px_chan_recv_locked(px_chan *ch, px_slot *out, px_sel **wake) {
  return recv_locked(ch, out, wake, 0);
}

int px_chan_try(px_chan *ch, int op, px_slot *v) {
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = op == PX_CHAN_SEND ? px_chan_send_locked(ch, v, &wake)
                             : recv_locked(ch, v, &wake, op == PX_CHAN_RECV_PLAIN);
  px_chan_unlock(ch);
  px_chan_wake_from(ch, wake);
  return r;
}

/* Give back a value a cancelled receiver was handed: to the next parked
 * receiver, else to the head of the buffer, so no message is lost. */
void px_chan_unreceive(px_chan *ch, px_slot *v) {
  px_sel *wake = NULL;
  px_chan_lock(ch);
  px_entry *e = claim_first(ch, &ch->recvq, 0);
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

/* Wake what an operation of the calling thread fired.  A parked party on
 * the same VM cannot have been spinning for this hand-off (one thread runs
 * both), and will not be next time either: spinning on this channel is
 * futile for now, so its credit goes to zero.  A later spin that succeeds
 * (a party on another worker) refills it. */
void px_chan_wake_from(px_chan *ch, px_sel *wake) {
  if (!wake) return;
  for (px_sel *s = wake; s; s = s->wake_next)
    if (s->kind != SEL_HOST && px_vm_on_thread(s->w.vm))
      atomic_store_explicit(&ch->spin_credit, 0, memory_order_relaxed);
  px_chan_wake_all(wake);
}

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
  atomic_init(&ch->lock_sleepers, 0);
  ch->cap = cap;
  ch->trace_id = px_trace_new_id();
  atomic_init(&ch->spin_credit, 4);
  atomic_init(&ch->spin_probe, 0);
  atomic_init(&ch->spins, 0);
  atomic_fetch_add_explicit(&live_channels, 1, memory_order_relaxed);
  return ch;
}

/* The methods are installed by lua/parx/chan.lua: it is loaded in this VM
 * first if a channel arrives here before anyone required it. */
void px_chan_push(lua_State *L, px_shared *obj) { px_sync_push_face(L, obj, "parx.chan"); }

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

int px_chan_close(px_chan *ch) {
  px_sel *wake = NULL;
  px_chan_lock(ch);
  if (ch->closed) {
    px_chan_unlock(ch);
    return 0;
  }
  ch->closed = 1;
  px_entry *e;
  while ((e = claim_first(ch, &ch->recvq, 0))) fired(e, 0, &wake);
  while ((e = claim_first(ch, &ch->sendq, 0))) fired(e, 0, &wake);
  px_chan_unlock(ch);
  px_chan_wake_all(wake);
  return 1;
}

