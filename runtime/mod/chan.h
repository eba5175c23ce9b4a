/*
 * chan.h -- channels, shared by chan_queue.c (the channel and its queues),
 * chan_buffer.c (its buffers), chan_exchange.c (a rendezvous's exchange),
 * chan_wait.c (parked operations), chan.c (the Lua face), slot.c (values
 * in flight), select.c (parx.select) and chan_host.c (parx.h's host
 * access).
 *
 * A channel is a px_shared object: a lock, a buffer of slots and two
 * queues of parked parties (receivers, senders).  Every operation, from a
 * task of any VM or from a host thread, is the same three steps: match a
 * parked counterpart (direct hand-off, as in Go), else use the buffer, else
 * park.  A send that finds room in a lock-free buffer, a receive that
 * finds a value there, and a meeting at a rendezvous's exchange, need no
 * lock; the rest happens under the channel's lock.
 *
 * A parked operation is a px_sel ("select record", Go's sudog group): one
 * px_wait for the scheduler plus one px_entry per case, each entry linked
 * into one channel's queue.  A plain send or receive is a select of one case.
 * Only one case may fire: whoever completes an entry first wins the sel's
 * `fired` flag with a compare-and-swap; later parties find it set and drop
 * the stale entry.  The winner writes the result into the sel and wakes it
 * after releasing the channel's lock (px_wake for a task, a condition
 * variable for a host thread).
 */
#ifndef PX_CHAN_H
#define PX_CHAN_H

#include <pthread.h>
#include <sched.h>

#include "../core/px.h"

/* ---- slots: one value in flight (slot.h, slot.c) ---------------------- */

#include "slot.h"

/* ---- channels ---------------------------------------------------------- */

typedef struct px_sel px_sel;
typedef struct px_entry px_entry;

typedef struct px_waitq {
  px_entry *first, *last;
} px_waitq;

/* A cell of the lock-free buffer (chan_buffer.c): free for the push at
 * position p while seq == 2p, holding that push's value for the pop at p
 * once seq == 2p + 1. */
typedef struct px_vcell {
  atomic_uint_fast64_t seq;
  atomic_uchar plain;   /* px_slot_is_plain(&v), read before a pop claims it */
  px_slot v;
} px_vcell;

/* A party spinning at a rendezvous channel's exchange (chan_exchange.c). */
typedef struct px_xwait {
  atomic_int state;     /* 0 waiting, 1 the value moved, 2 the channel closed */
  px_slot v;            /* a sender's value, or the one handed to a receiver */
  px_vm *vm;            /* the spinner's, for trace flows */
} px_xwait;

/* A value put back in front of the lock-free buffer (chan_buffer.c). */
typedef struct px_front {
  px_slot v;
  uint64_t n;           /* its number for trace flows, 0 if none */
} px_front;

/* Bounded channels up to this capacity buffer in cells that a send and a
 * receive use without the lock (chan_buffer.c: "the lock-free buffer");
 * larger ones in a ring under the lock that grows. */
#define PX_CHAN_VQ_MAX 4096
/* An unbounded channel buffers in this many such cells, and what does not
 * fit in a ring under the lock after them. */
#define PX_CHAN_VQ_UNBOUNDED 1024

typedef struct px_chan {
  px_shared hdr;        /* first: shared-object header */
  atomic_int lock;      /* px_chan_lock; guards everything below but the atomics */
  atomic_int lock_sleepers; /* threads asleep (or about to be) on lock */
  long cap;             /* -1 unbounded, 0 rendezvous, else bounded */
  int vq;               /* 1: the buffer is `cells` (and `ring` an unbounded
                           one's overflow), else `ring` */
  long ncells;          /* the cells: cap, or PX_CHAN_VQ_UNBOUNDED */
  px_slot *ring;
  size_t ringsize, head, count;
  int closed;
  px_waitq recvq, sendq;
  atomic_int spin_credit; /* adaptive spinning before parking (chan_wait.c) */
  atomic_uint spin_probe;
  atomic_ulong spins;     /* parks and prespins that spun (a debug counter) */
  int64_t trace_id;       /* traces: its number; values in and out, for */
  atomic_uint_fast64_t nsent, nrecv; /* send -> recv flows (trace.h): the
                          ring's, and a rendezvous's numbers */
  /* A rendezvous channel's exchange (chan_exchange.c): a sender, or a
   * receiver, spinning for its counterpart before it parks. */
  _Atomic(struct px_xwait *) xsend, xrecv;
  /* The lock-free buffer (vq): read-mostly first (written when a party
   * parks or leaves, or a value is put back), then each end's position on
   * a line of its own. */
  _Alignas(64) _Atomic(px_vcell *) cells; /* cap cells, from the first push */
  atomic_int nrecv_parked; /* receivers linked in recvq */
  atomic_int nsend_parked; /* senders linked in sendq */
  atomic_int nfront;       /* values in front (a pop without the lock declines) */
  px_front *front;         /* the stack of them, the head last; under the lock */
  size_t frontcap;
  _Alignas(64) atomic_uint_fast64_t enq; /* the next push's position | VQ_* flags */
  _Alignas(64) atomic_uint_fast64_t deq; /* the next pop's position */
} px_chan;

extern px_shared_type px_chan_type;

static inline void px_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* The channel lock.  Critical sections are a few dozen instructions, so
 * taking it is one compare-and-swap and releasing it one plain store; a
 * contended lock spins briefly (the holder is running on another CPU and
 * releases within a few hundred cycles) and then sleeps in a futex (Go's
 * runtime/lock_futex.go): a lock that only yields would burn a CPU that a
 * BLAS call or another VM needs while its holder is preempted.  A pthread
 * mutex here cost 4x in throughput between two workers on a 16-core Xeon
 * (glibc's mutex sleeps at once), and an atomic exchange to release (to
 * learn whether anyone sleeps) costs as much as the rest of a send again:
 * so a sleeper counts itself in lock_sleepers, the release reads that
 * count after its store, and a sleeper that a release missed (the two
 * raced) wakes by itself after LOCK_NAP_NS (chan_queue.c). */
void px_chan_lock_contended(px_chan *ch); /* chan_queue.c */
void px_chan_unlock_wake(px_chan *ch);    /* chan_queue.c */

static inline void px_chan_lock(px_chan *ch) {
  int expected = 0;
  if (!atomic_compare_exchange_strong_explicit(&ch->lock, &expected, 1, memory_order_acquire,
                                               memory_order_relaxed))
    px_chan_lock_contended(ch);
}

static inline void px_chan_unlock(px_chan *ch) {
  atomic_store_explicit(&ch->lock, 0, memory_order_release);
  if (atomic_load_explicit(&ch->lock_sleepers, memory_order_relaxed)) px_chan_unlock_wake(ch);
}

px_chan *px_chan_new(long cap); /* NULL when out of memory */
/* Values buffered now (ch->lock held). */
size_t px_chan_len_locked(px_chan *ch);
/* Channels alive in the process (specs check that they are freed). */
long px_chan_live(void);
/* 1 if this call closed ch, 0 if it was closed already.  Any thread. */
int px_chan_close(px_chan *ch);

/* ---- parked operations ------------------------------------------------- */

struct px_entry {
  px_entry *prev, *next; /* in ch's recvq or sendq; guarded by ch->lock */
  px_sel *sel;
  px_chan *ch;           /* one reference while the sel lives */
  int index;             /* case index, 0-based */
  int is_send;
  int linked;            /* guarded by ch->lock */
  px_slot val;           /* send: the value offered */
};

enum { SEL_RECV, SEL_SEND, SEL_SELECT, SEL_HOST };

struct px_sel {
  px_wait w;             /* first: the scheduler's record */
  atomic_int fired;      /* 0 waiting, 1 a case (or the timer) won */
  int kind;              /* SEL_* */
  int index;             /* the case that fired, -1 for the timeout */
  int ok;                /* 1 value moved, 0 the channel was closed */
  px_slot got;           /* recv: the value received */
  px_sel *wake_next;     /* a waker's local list, after it fired the sel */
  int queued;            /* entries were put in channel queues */
  atomic_int spin;       /* 1: the owner spins before parking; a waker
                            that swaps in 2 skips px_wake (chan_wait.c) */
  int has_timer;
  uv_timer_t timer;
  /* Host waiters block on a condition variable instead of parking. */
  pthread_mutex_t *host_lock;
  pthread_cond_t *host_cond;
  int host_done;
  int n;
  px_entry cases[];
};

/* n cases, all slots nil.  NULL when out of memory. */
px_sel *px_sel_new(int kind, int n);
/* Claim the sel for the caller: 1 if it won, 0 if a case already fired. */
static inline int px_sel_claim(px_sel *sel) {
  int expected = 0;
  return atomic_compare_exchange_strong_explicit(&sel->fired, &expected, 1, memory_order_acq_rel,
                                                 memory_order_acquire);
}
/* Unlink every entry that is still queued (locking each channel in turn),
 * free the send values that were not taken and drop the channel references;
 * then free the sel (or close its timer, which frees it). */
void px_sel_finish(px_sel *sel);

/* Operations with ch->lock held.  `wake` collects sels to wake once the lock
 * is released (px_chan_wake_all).  Results: 1 done, 0 would block,
 * -1 closed (send) or closed and drained (recv).  A send consumes *v only
 * when it returns 1. */
int px_chan_send_locked(px_chan *ch, px_slot *v, px_sel **wake);
int px_chan_recv_locked(px_chan *ch, px_slot *out, px_sel **wake);
/* One send or receive that never parks: take the lock, operate, release it
 * and wake what it fired (the results above).  PX_CHAN_RECV_PLAIN receives
 * only a value for which px_slot_is_plain holds: 0 (nothing taken) when
 * the next value is another. */
enum { PX_CHAN_SEND, PX_CHAN_RECV, PX_CHAN_RECV_PLAIN };
int px_chan_try(px_chan *ch, int op, px_slot *v);
/* px_chan_try for the FFI path: a full (or empty) lock-free buffer is
 * retried a few times first (chan_queue.c). */
int px_chan_try_fast(px_chan *ch, int op, px_slot *v);
/* The same on the lock-free buffer or a rendezvous's exchange only, never
 * taking the lock: 1 done, 0 not (always 0 on other channels). */
int px_chan_try_unlocked(px_chan *ch, int op, px_slot *v);
/* A rendezvous channel's exchange (chan_exchange.c).  wait: wait there for
 * a counterpart, spinning for up to limit_ns (1: done; 0: not, v
 * untouched: park).  take: take the party waiting on the other side (1:
 * done).  close: tell the parties there (ch->lock held). */
int px_chan_exchange_wait(px_chan *ch, int op, px_slot *v, px_vm *vm, uint64_t limit_ns);
int px_chan_exchange_take(px_chan *ch, int op, px_slot *v);
void px_chan_exchange_close(px_chan *ch);
/* The next number of a channel's trace flows. */
static inline uint64_t px_chan_next_n(atomic_uint_fast64_t *c) {
  return atomic_fetch_add_explicit(c, 1, memory_order_relaxed) + 1;
}
/* Before a send or receive on vm parks: retry px_chan_try_unlocked for a
 * moment while the counterpart may be running on another CPU (chan_wait.c).
 * 1: done. */
int px_chan_prespin(px_chan *ch, int op, px_slot *v, px_vm *vm);
/* Park e in its queue.  On a channel with the lock-free buffer this also
 * settles: a value pushed meanwhile goes to e (or to whoever is ahead):
 * wake what it fired once the lock is released. */
void px_chan_enqueue_locked(px_chan *ch, px_entry *e, px_sel **wake);
void px_chan_unlink_locked(px_chan *ch, px_entry *e);
void px_chan_wake_all(px_sel *list);
/* px_chan_wake_all for what an operation on ch by the calling thread fired;
 * a woken party on this thread's VM zeroes ch's spin credit. */
void px_chan_wake_from(px_chan *ch, px_sel *wake);
/* Give back a value a cancelled receiver was handed: to the next parked
 * receiver, else to the head of the buffer (takes ch->lock). */
void px_chan_unreceive(px_chan *ch, px_slot *v);

/* Push the outcome of a fired sel (see chan_wait.c for the shapes). */
int px_sel_outcome(lua_State *L, px_sel *sel);
/* Spinning before parking (chan_wait.c): whether a task of vm should (never
 * while vm has something else to run), and the spin itself, after
 * sel->spin was set to 1 with the entries queued.  1: sel fired meanwhile
 * and no wake will come; 0: park. */
int px_chan_should_spin(px_chan *ch, px_vm *vm);
/* The CPUs online, read once (chan_queue.c). */
int px_chan_ncpus(void);
int px_sel_spin(px_chan *ch, px_sel *sel);

/* Park L's task on sel, whose entries the caller enqueued after calling
 * px_wait_prepare.  Sets the scheduler callbacks. */
int px_sel_park(lua_State *L, px_sel *sel);
void px_sel_setup_wait(px_sel *sel);
/* px_wait_prepare(L, &sel->w) without raising: 0, or -1 when the task
 * cannot park; the caller then frees sel and returns px_sel_raise(L),
 * which raises what px_wait_prepare would have. */
int px_sel_prepare(lua_State *L, px_sel *sel);
int px_sel_raise(lua_State *L);

/* The channel behind the proxy at idx (raises when it is not one).  Fast:
 * compares the metatable with the upvalue when called as a method. */
px_chan *px_chan_check(lua_State *L, int idx);

/* Make sure parx.chan's metatable (methods included) exists in L's VM. */
void px_chan_push(lua_State *L, px_shared *obj);

int px_chan_select(lua_State *L); /* select.c: the C half of parx.select */

/* chan_fast.c: the FFI fast path's function table, as a light userdata. */
const void *px_chan_fast_api(void);

#endif
