/*
 * chan_buffer.c -- a channel's buffers: the ring that grows under the
 * channel's lock, and the lock-free cells of a channel of capacity 1..4096
 * (or an unbounded one's first 1024).  The operations on the parked
 * parties, which use these, are chan_queue.c's.
 */
#include <assert.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "chan_buffer.h"

/* ---- the ring buffer ------------------------------------------------------ */

/* Grow to hold at least one more slot.  Bounded channels grow lazily up to
 * their capacity, so parx.channel(1e6) costs nothing until it fills. */
static int px_ring_grow(px_chan *ch) {
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
 * channel are not counted: px_ring_push gives them back (never the last one:
 * whoever pushes holds a reference of its own) and px_ring_pop takes them
 * again before anyone can unmarshal the message.  When the last counted
 * reference goes, chan_free frees the buffer without releasing them.
 * Longer cycles (a in b's buffer, b in a's) are still not collected: the
 * README says so.  A message holds at most one reference per proxy it
 * met, so more than 255 to one channel is a pathological case; those
 * beyond 255 stay counted (the channel then leaks, as before). */
void px_weaken_self(px_chan *ch, px_slot *v) {
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

void px_strengthen_self(px_chan *ch, px_slot *v) {
  if (v->tag != SLOT_MSG) return;
  if (v->weak_self)
    atomic_fetch_add_explicit(&ch->hdr.refs, v->weak_self, memory_order_relaxed);
  v->weak_self = 0;
}

int px_ring_push(px_chan *ch, px_slot *v) {
  if (ch->count == ch->ringsize && px_ring_grow(ch) != 0) return -1;
  size_t tail = ch->head + ch->count;
  if (tail >= ch->ringsize) tail -= ch->ringsize;
  px_weaken_self(ch, v);
  ch->ring[tail] = *v;
  ch->count++;
  v->tag = SLOT_NIL;
  return 0;
}

/* Put a value back at the head (a receiver was cancelled after the value
 * was handed to it); may exceed the capacity by one. */
int px_ring_push_front(px_chan *ch, px_slot *v) {
  if (ch->count == ch->ringsize && px_ring_grow(ch) != 0) return -1;
  ch->head = ch->head ? ch->head - 1 : ch->ringsize - 1;
  px_weaken_self(ch, v);
  ch->ring[ch->head] = *v;
  ch->count++;
  v->tag = SLOT_NIL;
  return 0;
}

/* The popper holds a reference to ch, so the ones given back are safe. */
void px_ring_pop(px_chan *ch, px_slot *out) {
  *out = ch->ring[ch->head];
  if (++ch->head == ch->ringsize) ch->head = 0;
  ch->count--;
  px_strengthen_self(ch, out);
}

/* ---- the lock-free buffer -------------------------------------------------
 *
 * A bounded channel of capacity 1..PX_CHAN_VQ_MAX buffers in `cap` cells,
 * Vyukov's bounded multi-producer multi-consumer queue: a push claims the
 * position p = `enq` with a compare-and-swap when the cell there is free
 * for it (seq == 2p), writes the value and publishes it (seq = 2p + 1); a
 * pop claims `deq` when the cell holds that position's value and frees it
 * for the push cap positions on (seq = 2(p + cap)).  (Vyukov's p, p + 1
 * and p + cap cannot tell a full cell from a free one when cap is 1.)  A send that finds room and a receive
 * that finds a value complete without the lock, and the two ends of a busy
 * channel touch only their own position and the cells they use: under the
 * lock every operation moved the lock's cache line between the two CPUs and
 * the consumer was starved into sleeping on it (1e6 numbers through a
 * channel of 1024 between two workers on the 2-core VM: 4-7 M messages a
 * second with the lock; the queue alone in C moves 40-48 M).
 *
 * The lock still guards the parked parties, close and the values put back
 * in front (unreceive), and the locked path uses the same cells.  What
 * keeps a value from sitting in the buffer while a receiver sleeps, or a
 * free cell while a sender sleeps, is Dekker's pattern: each side writes
 * its word with a seq_cst read-modify-write, then reads the other's with a
 * seq_cst load, so one of the two sees the other (no fence: one after each
 * push waited for the cell's cache line to reach the other CPU, every
 * message).  The words are the positions, which a claim moves before the
 * cell is written or freed, so a claimed cell counts as done for the
 * parker, which waits the moment it takes to copy a value (crossbeam's
 * channels do the same):
 *   - a receiver parks only after counting itself in nrecv_parked and
 *     looking at the buffer again under the lock (settle); a push without
 *     the lock claims its cell and, once it has written it, settles under
 *     the lock when nrecv_parked is not 0;
 *   - a sender parks only after counting itself in nsend_parked and
 *     setting VQ_SENDERS in enq, which turns away every push without the
 *     lock while a sender waits (the parked go first, in order), and
 *     looking again; a pop without the lock claims its cell and, once it
 *     has copied the value out, settles when nsend_parked is not 0;
 *   - close sets VQ_CLOSED in enq under the lock: a push that claimed its
 *     cell before is a send before the close, and settles when it is done;
 *     any later one fails its compare-and-swap, takes the locked path, and
 *     raises.  A closed channel's receivers are told so only once the
 *     buffer is drained, pushes still being written included.
 * A value put back in front (px_chan_unreceive, or settle's when the
 * receiver it popped for went away) makes pops without the lock decline
 * until the locked path has taken it: it is the head.
 */
px_vcell *px_vq_cells(px_chan *ch) {
  return atomic_load_explicit(&ch->cells, memory_order_acquire);
}

/* The cells, made on the first push (ch->lock held): 0, or -1 when out
 * of memory.  A channel that never buffers costs none. */
int px_vq_alloc(px_chan *ch) {
  if (atomic_load_explicit(&ch->cells, memory_order_relaxed)) return 0;
  px_vcell *c = malloc((size_t)ch->ncells * sizeof *c);
  if (!c) return -1;
  for (long i = 0; i < ch->ncells; i++) {
    atomic_init(&c[i].seq, 2 * (uint64_t)i);
    atomic_init(&c[i].plain, 0);
    c[i].v.tag = SLOT_NIL;
  }
  atomic_store_explicit(&ch->cells, c, memory_order_release);
  return 0;
}

/* Push *v, consumed when pushed.  locked: the caller holds ch->lock and may
 * push while senders are parked (settle moves theirs in).  1 pushed (*n:
 * its number, for trace flows), 0 full, closed, turned away, or no cells
 * yet (the locked path tells which). */
int px_vq_push(px_chan *ch, px_slot *v, int locked, uint64_t *n) {
  px_vcell *cells = px_vq_cells(ch);
  if (!cells) return 0;
  uint64_t size = (uint64_t)ch->ncells;
  uint64_t e = atomic_load_explicit(&ch->enq, memory_order_relaxed);
  for (;;) {
    if ((e & VQ_CLOSED) || (!locked && (e & VQ_SENDERS))) return 0;
    uint64_t pos = e & VQ_POS;
    px_vcell *c = &cells[pos % size];
    uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    int64_t d = (int64_t)(seq - 2 * pos);
    if (d == 0) {
      /* (the flags ride along: e + 1 only moves the position; seq_cst:
       * Dekker's pattern, see above: the claim is what a parker reads) */
      if (atomic_compare_exchange_weak_explicit(&ch->enq, &e, e + 1, memory_order_seq_cst,
                                                memory_order_relaxed)) {
        c->v = *v;
        v->tag = SLOT_NIL;
        px_weaken_self(ch, &c->v);
        atomic_store_explicit(&c->plain, (unsigned char)px_slot_is_plain(&c->v),
                              memory_order_relaxed);
        atomic_store_explicit(&c->seq, 2 * pos + 1, memory_order_release);
        *n = pos + 1;
        return 1;
      }
    } else if (d < 0) {
      return 0; /* the cell still holds the value of cap pushes ago: full */
    } else {
      e = atomic_load_explicit(&ch->enq, memory_order_relaxed);
    }
  }
}

/* Pop into *out (*n: its number).  VQ_GOT, VQ_EMPTY, VQ_WRITING (a push
 * claimed the next cell and is writing it), or VQ_NOT_PLAIN (plain_only,
 * and the next value is not a plain scalar: left there). */
int px_vq_pop(px_chan *ch, px_slot *out, int plain_only, uint64_t *n) {
  px_vcell *cells = px_vq_cells(ch);
  if (!cells) return VQ_EMPTY;
  uint64_t size = (uint64_t)ch->ncells;
  uint64_t pos = atomic_load_explicit(&ch->deq, memory_order_relaxed);
  for (;;) {
    px_vcell *c = &cells[pos % size];
    uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    int64_t d = (int64_t)(seq - (2 * pos + 1));
    if (d == 0) {
      if (plain_only && !atomic_load_explicit(&c->plain, memory_order_relaxed)) return VQ_NOT_PLAIN;
      if (atomic_compare_exchange_weak_explicit(&ch->deq, &pos, pos + 1, memory_order_seq_cst,
                                                memory_order_relaxed)) {
        *out = c->v;
        atomic_store_explicit(&c->seq, 2 * (pos + size), memory_order_release);
        px_strengthen_self(ch, out); /* the popper holds a reference to ch */
        *n = pos + 1;
        return VQ_GOT;
      }
    } else if (d < 0) {
      uint64_t e = atomic_load_explicit(&ch->enq, memory_order_seq_cst) & VQ_POS;
      return e == pos ? VQ_EMPTY : VQ_WRITING;
    } else {
      pos = atomic_load_explicit(&ch->deq, memory_order_relaxed);
    }
  }
}

/* Whether fewer than cap values are claimed and not popped: then the next
 * push's cell is free, or will be once the pop that claimed it has copied
 * its value out (px_vq_push_locked waits for that). */
int px_vq_has_room(px_chan *ch) {
  uint64_t e = atomic_load_explicit(&ch->enq, memory_order_seq_cst) & VQ_POS;
  uint64_t d = atomic_load_explicit(&ch->deq, memory_order_seq_cst);
  return e - d < (uint64_t)ch->ncells;
}

/* Push under the lock: 1 pushed, 0 no room.  A cell whose pop has claimed
 * it but is still copying its value out counts as room: this waits. */
int px_vq_push_locked(px_chan *ch, px_slot *v, uint64_t *n) {
  for (unsigned spins = 1;; spins++) {
    if (px_vq_push(ch, v, 1, n)) return 1;
    if (!px_vq_has_room(ch)) return 0;
    px_cpu_relax();
    if ((spins & 63) == 0) sched_yield();
  }
}

/* Put v back at the head (ch->lock held); the value is lost when out of
 * memory (as the ring's px_ring_push_front). */
void px_front_push(px_chan *ch, px_slot *v, uint64_t n) {
  int nf = atomic_load_explicit(&ch->nfront, memory_order_relaxed);
  if ((size_t)nf == ch->frontcap) {
    size_t cap = ch->frontcap ? ch->frontcap * 2 : 4;
    px_front *f = realloc(ch->front, cap * sizeof *f);
    if (!f) {
      px_slot_free(v);
      return;
    }
    ch->front = f;
    ch->frontcap = cap;
  }
  px_weaken_self(ch, v);
  ch->front[nf] = (px_front){*v, n};
  v->tag = SLOT_NIL;
  atomic_store_explicit(&ch->nfront, nf + 1, memory_order_release);
}

/* An unbounded channel's overflow (ch->lock held): values sent while its
 * cells were full wait in the ring, after them, and pushes without the
 * lock are turned away (VQ_SENDERS) until the ring is empty again, so
 * order is kept.  A pop that finds the cells empty takes the locked path,
 * which takes the ring's head and moves as much of the rest into the cells
 * as fits (settle): the consumer pops those without the lock again.  (A
 * pop that freed a cell does not settle each time, as for a parked sender:
 * then a producer that outran its consumer made every receive take the
 * lock, 1.4-1.9 M messages a second.) */
int px_overflow_push(px_chan *ch, px_slot *v) {
  if (px_ring_push(ch, v) != 0) return -2;
  if (ch->count == 1) atomic_fetch_or(&ch->enq, VQ_SENDERS);
  return 1;
}

void px_overflow_pop(px_chan *ch, px_slot *out) { px_ring_pop(ch, out); }

/* The head value (ch->lock held): from the front, the cells, then the
 * overflow (an unbounded channel's: newer than every cell's); px_vq_pop's
 * results, *n 0 for the overflow's (no flow number). */
int px_pop_any(px_chan *ch, px_slot *out, int plain_only, uint64_t *n) {
  int nf = atomic_load_explicit(&ch->nfront, memory_order_relaxed);
  if (nf == 0) {
    int r = px_vq_pop(ch, out, plain_only, n);
    if (r != VQ_EMPTY || ch->count == 0) return r;
    if (plain_only && !px_slot_is_plain(&ch->ring[ch->head])) return VQ_NOT_PLAIN;
    px_overflow_pop(ch, out);
    *n = 0;
    return VQ_GOT;
  }
  px_front *f = &ch->front[nf - 1];
  if (plain_only && !px_slot_is_plain(&f->v)) return VQ_NOT_PLAIN;
  *out = f->v;
  *n = f->n;
  px_strengthen_self(ch, out);
  atomic_store_explicit(&ch->nfront, nf - 1, memory_order_release);
  return VQ_GOT;
}

