/*
 * chan_queue.c -- a channel: the queues of parked parties, the operations
 * under its lock, the ones without it, creation, close and free.  Its
 * buffers are chan_buffer.c's, a rendezvous's exchange chan_exchange.c's,
 * the parked records chan_wait.c's, the Lua face chan.c's.
 *
 * See chan.h for the design.  The invariants, under ch->lock:
 *   - receivers wait only while the buffer is empty and the channel open;
 *   - senders wait only while the buffer is full (always, for capacity 0);
 *   - an entry in a queue may be stale (its sel fired through another case);
 *     whoever pops it drops it.
 * (For the lock-free buffer "only while" holds once the operation that
 * raced the park has settled: chan_buffer.c.)  So a receive first takes
 * from the buffer and then refills it from the first parked sender
 * (keeping FIFO order), and a send hands its value to the first parked
 * receiver (Go's direct hand-off): a busy consumer that never empties the
 * buffer is never woken, and one wake-up of a parked consumer is followed
 * by a whole buffer's worth of receives that need no wake-up.
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

#include "chan_buffer.h"
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

/* The n-th value out of ch went to a receiver parked on VM `to` (a flow
 * from its send, recorded when it was pushed). */
static void trace_handed(px_chan *ch, uint64_t n, px_vm *to) {
  px_trace *tr = px_trace_self;
  if (PX_RECORDER_OFF || !tr) return;
  px_stat_add(&tr->stats.chan_ops, 1);
  if (tr->logging && to && n && px_trace_flow_kept(n)) px_trace_flow(PX_EV_FLOW_IN, ch->trace_id, n, to);
}

/* ---- wait queues ---------------------------------------------------------- */

static px_entry *claim_first(px_chan *ch, px_waitq *q, int plain_only);
static void fired(px_entry *e, int ok, px_sel **wake);
static void senders_gone(px_chan *ch);

/* Move values to parked parties while both are there (ch->lock held, a
 * channel with the lock-free buffer): buffered values, the front first, to
 * parked receivers; parked senders' values into free cells, in order; a
 * closed channel's receivers are told so once it is drained.  Returns
 * whether a value moved. */
static int settle(px_chan *ch, px_sel **wake) {
  int moved = 0;
  for (;;) {
    int step = 0;
    while (ch->recvq.first) {
      px_slot v;
      uint64_t n = 0;
      int r = px_pop_any(ch, &v, 0, &n);
      for (unsigned spins = 1; r == VQ_WRITING; spins++) {
        /* A push claimed the cell and is writing it: the value is there
         * (its pusher may have looked for parked receivers before this
         * one was counted), in a moment. */
        px_cpu_relax();
        if ((spins & 63) == 0) sched_yield();
        r = px_pop_any(ch, &v, 0, &n);
      }
      if (r != VQ_GOT) {
        px_entry *e;
        if (ch->closed)
          while ((e = claim_first(ch, &ch->recvq, 0))) fired(e, 0, wake);
        break;
      }
      px_entry *e = claim_first(ch, &ch->recvq, 0);
      if (!e) { /* every one parked went away meanwhile */
        px_front_push(ch, &v, n);
        break;
      }
      e->sel->got = v;
      fired(e, 1, wake);
      trace_handed(ch, n, e->sel->w.vm);
      step = 1;
    }
    /* The overflow's head into free cells (an unbounded channel's; once
     * closed it drains from the ring itself: px_pop_any). */
    while (ch->count && !ch->closed && px_vq_has_room(ch)) {
      px_slot v;
      uint64_t n = 0;
      px_overflow_pop(ch, &v);
      int r = px_vq_push_locked(ch, &v, &n); /* only the lock's holder pushes: room */
      assert(r == 1);
      (void)r;
      px_trace_chan_sent(ch->trace_id, n);
      step = 1;
    }
    while (ch->sendq.first && !ch->closed && px_vq_cells(ch) && px_vq_has_room(ch)) {
      px_entry *e = claim_first(ch, &ch->sendq, 0);
      if (!e) break;
      /* Only the lock's holder pushes while VQ_SENDERS is set: the room
       * seen is still there. */
      uint64_t n = 0;
      int r = px_vq_push_locked(ch, &e->val, &n);
      assert(r == 1);
      (void)r;
      fired(e, 1, wake);
      px_trace_chan_sent(ch->trace_id, n);
      step = 1;
    }
    if (!step) break;
    moved = 1;
  }
  senders_gone(ch);
  return moved;
}

void px_chan_enqueue_locked(px_chan *ch, px_entry *e, px_sel **wake) {
  px_waitq *q = e->is_send ? &ch->sendq : &ch->recvq;
  e->next = NULL;
  e->prev = q->last;
  if (q->last) q->last->next = e;
  else q->first = e;
  q->last = e;
  e->linked = 1;
  if (!ch->vq) return;
  /* Counted (a seq_cst read-modify-write: the fence of Dekker's pattern),
   * then a second look at the buffer. */
  if (e->is_send) {
    atomic_fetch_add(&ch->nsend_parked, 1);
    atomic_fetch_or(&ch->enq, VQ_SENDERS);
  } else {
    atomic_fetch_add(&ch->nrecv_parked, 1);
  }
  settle(ch, wake);
}

/* Unlink e; VQ_SENDERS stays as it is (settle clears it when it is done:
 * while it moves senders' values in, it must be the only one pushing). */
static void unlink_entry(px_chan *ch, px_entry *e) {
  px_waitq *q = e->is_send ? &ch->sendq : &ch->recvq;
  if (e->prev) e->prev->next = e->next;
  else q->first = e->next;
  if (e->next) e->next->prev = e->prev;
  else q->last = e->prev;
  e->prev = e->next = NULL;
  e->linked = 0;
  if (!ch->vq) return;
  atomic_fetch_sub_explicit(e->is_send ? &ch->nsend_parked : &ch->nrecv_parked, 1,
                            memory_order_relaxed);
}

/* No sender parked any more: pushes without the lock may go again. */
static void senders_gone(px_chan *ch) {
  if (ch->vq && !ch->sendq.first && ch->count == 0 &&
      (atomic_load_explicit(&ch->enq, memory_order_relaxed) & VQ_SENDERS))
    atomic_fetch_and(&ch->enq, ~VQ_SENDERS);
}

void px_chan_unlink_locked(px_chan *ch, px_entry *e) {
  unlink_entry(ch, e);
  if (e->is_send) senders_gone(ch);
}

size_t px_chan_len_locked(px_chan *ch) {
  if (!ch->vq) return ch->count;
  uint64_t e = atomic_load_explicit(&ch->enq, memory_order_relaxed) & VQ_POS;
  uint64_t d = atomic_load_explicit(&ch->deq, memory_order_relaxed);
  return (size_t)(e - d) + (size_t)atomic_load_explicit(&ch->nfront, memory_order_relaxed) +
         ch->count;
}

/* The first parked party of q that can still fire, unlinked and claimed;
 * stale entries are dropped on the way.  plain_only (a receive of the FFI
 * path, chan_fast.c): stop, leaving the queue as it is, at an entry whose
 * value is not a plain scalar. */
static px_entry *claim_first(px_chan *ch, px_waitq *q, int plain_only) {
  px_entry *e;
  while ((e = q->first)) {
    if (plain_only && !px_slot_is_plain(&e->val)) return NULL;
    unlink_entry(ch, e);
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

/* The locked path on the lock-free buffer: the parked senders' values go
 * first, then v; then whatever a parked receiver can take. */
static int vq_send_locked(px_chan *ch, px_slot *v, px_sel **wake) {
  if (px_vq_alloc(ch) != 0) return -2;
  settle(ch, wake);
  uint64_t n = 0;
  if (ch->sendq.first || ch->count || !px_vq_push_locked(ch, v, &n)) {
    if (ch->cap >= 0) return 0;
    /* unbounded: after the cells and what overflowed before */
    int r = px_overflow_push(ch, v);
    if (r == 1) {
      px_trace_chan_sent(ch->trace_id, 0);
      settle(ch, wake);
    }
    return r;
  }
  px_trace_chan_sent(ch->trace_id, n);
  settle(ch, wake);
  return 1;
}

static int vq_recv_locked(px_chan *ch, px_slot *out, px_sel **wake, int plain_only) {
  for (unsigned spins = 1;; spins++) {
    uint64_t n = 0;
    int r = px_pop_any(ch, out, plain_only, &n);
    if (r == VQ_GOT) {
      px_trace_chan_received(ch->trace_id, n);
      settle(ch, wake); /* a parked sender's value into the freed cell */
      return 1;
    }
    if (r == VQ_NOT_PLAIN) return 0;
    if (r == VQ_WRITING) { /* a push between its claim and its publish */
      px_cpu_relax();
      if ((spins & 63) == 0) sched_yield();
      continue;
    }
    if (ch->sendq.first && settle(ch, wake)) continue;
    return ch->closed ? -1 : 0;
  }
}

int px_chan_send_locked(px_chan *ch, px_slot *v, px_sel **wake) {
  if (ch->closed) return -1;
  if (ch->vq) return vq_send_locked(ch, v, wake);
  px_entry *e = claim_first(ch, &ch->recvq, 0);
  if (e) {
    e->sel->got = *v;
    v->tag = SLOT_NIL;
    fired(e, 1, wake);
    px_trace_chan_handoff(ch->trace_id, px_chan_next_n(&ch->nsent), px_chan_next_n(&ch->nrecv), e->sel->w.vm);
    return 1;
  }
  if (ch->cap < 0 || ch->count < (size_t)ch->cap) {
    if (px_ring_push(ch, v) != 0) return -2;
    px_trace_chan_sent(ch->trace_id, px_chan_next_n(&ch->nsent));
    return 1;
  }
  return 0;
}

static int recv_locked(px_chan *ch, px_slot *out, px_sel **wake, int plain_only) {
  if (ch->vq) return vq_recv_locked(ch, out, wake, plain_only);
  if (ch->count) {
    if (plain_only && !px_slot_is_plain(&ch->ring[ch->head])) return 0;
    px_ring_pop(ch, out);
    px_trace_chan_received(ch->trace_id, px_chan_next_n(&ch->nrecv));
    px_entry *e = claim_first(ch, &ch->sendq, 0);
    if (e) {
      px_ring_push(ch, &e->val); /* cannot fail: a slot was just freed */
      fired(e, 1, wake);
      px_chan_next_n(&ch->nsent);
    }
    return 1;
  }
  px_entry *e = claim_first(ch, &ch->sendq, plain_only);
  if (e) {
    *out = e->val;
    e->val.tag = SLOT_NIL;
    fired(e, 1, wake);
    px_chan_next_n(&ch->nsent);
    px_trace_chan_received(ch->trace_id, px_chan_next_n(&ch->nrecv));
    return 1;
  }
  return ch->closed ? -1 : 0;
}

int px_chan_recv_locked(px_chan *ch, px_slot *out, px_sel **wake) {
  return recv_locked(ch, out, wake, 0);
}

/* Settle under the lock: a push or pop without it found a party parked. */
static void kick(px_chan *ch) {
  px_sel *wake = NULL;
  px_chan_lock(ch);
  settle(ch, &wake);
  px_chan_unlock(ch);
  px_chan_wake_from(ch, wake);
}

/* The operation without the lock, on the lock-free buffer: 1 done, 0 not
 * (full, empty, closed, a value put back in front, ...: the locked path
 * decides). */
static int vq_try(px_chan *ch, int op, px_slot *v) {
  uint64_t n;
  /* The claim's compare-and-swap and this load are seq_cst, as the
   * parker's count and its look at the positions: one of the two sees the
   * other (no fence: a full one here waited for the cell's cache line to
   * reach the other CPU, every message). */
  if (op == PX_CHAN_SEND) {
    if (!px_vq_push(ch, v, 0, &n)) return 0;
    px_trace_chan_sent(ch->trace_id, n);
    if (atomic_load_explicit(&ch->nrecv_parked, memory_order_seq_cst)) kick(ch);
    return 1;
  }
  if (atomic_load_explicit(&ch->nfront, memory_order_acquire)) return 0;
  if (px_vq_pop(ch, v, op == PX_CHAN_RECV_PLAIN, &n) != VQ_GOT) return 0;
  px_trace_chan_received(ch->trace_id, n);
  if (atomic_load_explicit(&ch->nsend_parked, memory_order_seq_cst)) kick(ch);
  return 1;
}

int px_chan_try_unlocked(px_chan *ch, int op, px_slot *v) {
  if (ch->vq) return vq_try(ch, op, v);
  /* (a plain receive, the FFI's, cannot take a value it does not know) */
  return ch->cap == 0 && op != PX_CHAN_RECV_PLAIN && px_chan_exchange_take(ch, op, v);
}

int px_chan_ncpus(void) {
  static atomic_int n;
  int v = atomic_load_explicit(&n, memory_order_relaxed);
  if (!v) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    v = c > 0 ? (int)c : 1;
    atomic_store_explicit(&n, v, memory_order_relaxed);
  }
  return v;
}

/* The FFI path's px_chan_try (chan_fast.c): a full (or empty) lock-free
 * buffer is retried up to FAST_RETRIES times first, a pause apart, when
 * another CPU may be serving the other end: a producer faster than its
 * consumer finds the buffer full at almost every send, and each one that
 * left the FFI path for the C function's locked path and prespin cost
 * some 100 ns (short strings through a channel of 1024: 9-11 M messages a
 * second in such runs, 23 M in the others). */
#define FAST_RETRIES 32

int px_chan_try_fast(px_chan *ch, int op, px_slot *v) {
  if (ch->vq) {
    for (int i = 0; i < FAST_RETRIES; i++) {
      if (vq_try(ch, op, v)) return 1;
      if (px_chan_ncpus() < 2) break;
      px_cpu_relax();
    }
  }
  return px_chan_try(ch, op, v);
}

int px_chan_try(px_chan *ch, int op, px_slot *v) {
  if (px_chan_try_unlocked(ch, op, v)) return 1;
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
  } else if (ch->vq) {
    px_front_push(ch, v, 0);
  } else if (px_ring_push_front(ch, v) != 0) {
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
 * uncounted references its messages hold to ch itself (see px_weaken_self). */
static void free_buffered(px_shared *obj, px_slot v) {
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

static void chan_free(px_shared *obj) {
  px_chan *ch = (px_chan *)obj;
  while (ch->count) {
    px_slot v = ch->ring[ch->head];
    if (++ch->head == ch->ringsize) ch->head = 0;
    ch->count--;
    free_buffered(obj, v);
  }
  int nf = atomic_load_explicit(&ch->nfront, memory_order_relaxed);
  while (nf > 0) free_buffered(obj, ch->front[--nf].v);
  px_vcell *cells = atomic_load_explicit(&ch->cells, memory_order_relaxed);
  if (cells) {
    /* No one else is left: every claimed cell is written. */
    uint64_t e = atomic_load_explicit(&ch->enq, memory_order_relaxed) & VQ_POS;
    for (uint64_t p = atomic_load_explicit(&ch->deq, memory_order_relaxed); p < e; p++)
      free_buffered(obj, cells[p % (uint64_t)ch->ncells].v);
  }
  free(cells);
  free(ch->front);
  free(ch->ring);
  free(ch);
  atomic_fetch_sub_explicit(&live_channels, 1, memory_order_relaxed);
}

px_shared_type px_chan_type = {"parx.channel", chan_free, px_chan_push, 0};

px_chan *px_chan_new(long cap) {
  px_shared_register(&px_chan_type);
  /* Aligned: the two ends' positions have cache lines of their own. */
  px_chan *ch = aligned_alloc(64, (sizeof *ch + 63) / 64 * 64);
  if (!ch) return NULL;
  memset(ch, 0, sizeof *ch);
  px_shared_init(&ch->hdr, &px_chan_type);
  atomic_init(&ch->lock, 0);
  atomic_init(&ch->lock_sleepers, 0);
  ch->cap = cap;
  ch->vq = cap < 0 || (cap >= 1 && cap <= PX_CHAN_VQ_MAX);
  ch->ncells = cap < 0 ? PX_CHAN_VQ_UNBOUNDED : cap;
  atomic_init(&ch->cells, NULL);
  atomic_init(&ch->nrecv_parked, 0);
  atomic_init(&ch->nsend_parked, 0);
  atomic_init(&ch->nfront, 0);
  atomic_init(&ch->enq, 0);
  atomic_init(&ch->deq, 0);
  atomic_init(&ch->nsent, 0);
  atomic_init(&ch->nrecv, 0);
  atomic_init(&ch->xsend, NULL);
  atomic_init(&ch->xrecv, NULL);
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
  if (ch->cap == 0) px_chan_exchange_close(ch);
  if (ch->vq) {
    /* Pushes without the lock end here; receivers are told once the
     * buffer is drained (settle), pushes still being written included. */
    atomic_fetch_or(&ch->enq, VQ_CLOSED);
    while ((e = claim_first(ch, &ch->sendq, 0))) fired(e, 0, &wake);
    settle(ch, &wake);
  } else {
    while ((e = claim_first(ch, &ch->recvq, 0))) fired(e, 0, &wake);
    while ((e = claim_first(ch, &ch->sendq, 0))) fired(e, 0, &wake);
  }
  px_chan_unlock(ch);
  px_chan_wake_all(wake);
  return 1;
}

