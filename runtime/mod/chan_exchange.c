/*
 * chan_exchange.c -- a rendezvous channel's exchange: where a sender (or a
 * receiver) waits a few microseconds for its counterpart before it parks.
 * Used by chan_queue.c (px_chan_try, close) and chan_wait.c (the wait).
 */
#include <stdint.h>
#include <time.h>

#include "chan.h"

/* ---- a rendezvous's exchange ---------------------------------------------
 *
 * A rendezvous moves each value from a sender to a receiver that meet.
 * Under the lock alone, every value cost a select record, a park and a
 * wake on each side.  So before it parks, a sender (or a receiver) that
 * may have a counterpart running on another CPU (px_chan_prespin) waits
 * for up to a few microseconds at the channel's exchange: it publishes a
 * px_xwait on its own stack in xsend (or xrecv) and spins on its state.
 * A receiver (sender) that comes by takes it with a compare-and-swap back
 * to NULL, moves the value, and sets the state: one cache line each way.
 * The spinner that gives up takes itself back the same way; if that
 * fails, it was taken (or the channel closed) and it waits for the state.
 * Only senders publish in xsend and only receivers in xrecv, so a pointer
 * seen there again (a stack reused) is still a party of the same kind.
 * Close puts XCLOSED in both (under the lock) and sets state 2 on whoever
 * was there: every later look finds no party and takes the locked path,
 * which says closed.  The exchange holds at most one party each way; the
 * parked parties of the queues do not look at it, so a spinner that meets
 * none there parks and is served by the locked path, a few microseconds
 * late.  Values from the exchange never wait behind parked ones either:
 * a rendezvous has no order between parties to keep. */
#define XCLOSED ((px_xwait *)(uintptr_t)1)

/* Take the party waiting on the other side, if any: 1 done. */
int px_chan_exchange_take(px_chan *ch, int op, px_slot *v) {
  _Atomic(px_xwait *) *theirs = op == PX_CHAN_SEND ? &ch->xrecv : &ch->xsend;
  px_xwait *w = atomic_load_explicit(theirs, memory_order_acquire);
  if (!w || w == XCLOSED) return 0;
  if (!atomic_compare_exchange_strong_explicit(theirs, &w, NULL, memory_order_acq_rel,
                                               memory_order_relaxed))
    return 0;
  uint64_t n = px_trace_self ? px_chan_next_n(&ch->nsent) : 0;
  if (op == PX_CHAN_SEND) {
    w->v = *v;
    v->tag = SLOT_NIL;
    px_vm *to = w->vm;
    atomic_store_explicit(&w->state, 1, memory_order_release); /* w may go now */
    if (n) px_trace_chan_handoff(ch->trace_id, n, n, to);
  } else {
    *v = w->v;
    atomic_store_explicit(&w->state, 1, memory_order_release);
    /* Both ends here, now: the sender's own thread may record later than
     * this receive (a flow must not end before it starts). */
    if (n) {
      px_trace_chan_sent(ch->trace_id, n);
      px_trace_chan_received(ch->trace_id, n);
    }
  }
  return 1;
}

int px_chan_exchange_wait(px_chan *ch, int op, px_slot *v, px_vm *vm, uint64_t limit_ns) {
  if (ch->cap != 0) return 0;
  _Atomic(px_xwait *) *mine = op == PX_CHAN_SEND ? &ch->xsend : &ch->xrecv;
  _Atomic(px_xwait *) *theirs = op == PX_CHAN_SEND ? &ch->xrecv : &ch->xsend;
  px_xwait w;
  atomic_init(&w.state, 0);
  w.vm = vm;
  if (op == PX_CHAN_SEND) w.v = *v; /* a copy: v keeps its value until it is taken */
  else w.v.tag = SLOT_NIL;
  px_xwait *expected = NULL;
  if (!atomic_compare_exchange_strong_explicit(mine, &expected, &w, memory_order_release,
                                               memory_order_relaxed))
    return 0; /* another party of this kind waits there, or it closed */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t start = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  for (unsigned i = 1; atomic_load_explicit(&w.state, memory_order_acquire) == 0; i++) {
    px_cpu_relax();
    if (i & 15) continue;
    px_xwait *other = atomic_load_explicit(theirs, memory_order_relaxed);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if ((other && other != XCLOSED) || now - start > limit_ns) {
      /* A counterpart waits too (both published before either looked), or
       * time is up: take this one back, then take that one. */
      px_xwait *me = &w;
      if (atomic_compare_exchange_strong_explicit(mine, &me, NULL, memory_order_acq_rel,
                                                  memory_order_relaxed))
        return other && other != XCLOSED ? px_chan_exchange_take(ch, op, v) : 0;
      break; /* taken meanwhile, or closed: the state says */
    }
  }
  int state;
  while ((state = atomic_load_explicit(&w.state, memory_order_acquire)) == 0) px_cpu_relax();
  if (state == 2) return 0; /* closed: the locked path says so */
  if (op == PX_CHAN_SEND) v->tag = SLOT_NIL; /* the receiver has it */
  else *v = w.v;
  return 1; /* (whoever took this party recorded the flow) */
}

/* Close (ch->lock held): parties at the exchange are told; later ones
 * find XCLOSED. */
void px_chan_exchange_close(px_chan *ch) {
  _Atomic(px_xwait *) *x[2] = {&ch->xsend, &ch->xrecv};
  for (int i = 0; i < 2; i++) {
    px_xwait *w = atomic_exchange(x[i], XCLOSED);
    if (w && w != XCLOSED) atomic_store_explicit(&w->state, 2, memory_order_release);
  }
}
