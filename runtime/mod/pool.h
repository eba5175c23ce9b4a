/* pool.h -- shared between pool.c (the job and its caller's side),
 * pool_runner.c (the workers' side) and pool_transfer.c (transfer lanes);
 * private to the pool module. */
#ifndef PX_POOL_H
#define PX_POOL_H

#include <pthread.h>
#include <stddef.h>

#include "../core/px.h"

enum { MODE_MAP, MODE_STARMAP, MODE_REDUCE, MODE_FOR };

/* Chunk states. */
enum { CH_EMPTY, CH_PUBLISHED, CH_CLAIMED, CH_DONE, CH_FAILED, CH_TAKEN };

typedef struct chunk {
  px_msg in;  /* the input items (a table); unused by MODE_FOR */
  px_msg out; /* the result value, or the error value */
  long count; /* items in the chunk */
  int state;
  unsigned char in_fast;  /* how `in` was written (pool.h: px_pool_encode) */
  unsigned char out_fast; /* how `out` was written */
  unsigned char in_num;   /* the items are in job->in_nums (numeric lane) */
  unsigned char out_num;  /* the results are in job->out_nums */
  long base;              /* index of the chunk's first item, 0-based */
} chunk;

typedef struct pool_job pool_job;

/* A parked task: the caller waiting for results, or a runner waiting for
 * the caller to publish work.  Allocated per park. */
typedef struct pool_waiter {
  px_wait wait;
  struct pool_waiter *next;
  int timed_out;
  int has_timer;
  pool_job *job; /* for the timer callback; the parked task holds a ref */
  uv_timer_t timer;
} pool_waiter;

struct pool_job {
  px_shared hdr;
  int mode;
  px_msg fn;         /* the function, marshalled once; read-only after new */
  long nchunks;
  chunk *chunks;
  int64_t first, last, per; /* MODE_FOR ranges */
  /* The numeric lane (MODE_MAP): one double per item.  The caller writes
   * a chunk's numbers straight into in_nums and a runner its numeric
   * results into out_nums, both from JIT-compiled FFI loops in pool.lua;
   * no marshalling, no table per chunk.  A chunk holding anything else
   * goes through its messages.  The two are one buffer: a runner reads
   * item i before it writes result i, in its own chunk's slice only.
   * Each chunk's slice is written by one side before the publish or
   * finish (under lock) that hands it over. */
  double *in_nums, *out_nums;
  size_t buffer_cap; /* doubles in it */
  long nitems;     /* items the lane was made for (put checks against it) */

  /* lock guards everything below and every chunk's state, in and out. */
  pthread_mutex_t lock;
  long published;    /* chunks [0, published) may be claimed */
  long next;         /* the next chunk to claim */
  long ndone;        /* chunks done or failed */
  long items_done;
  long failed;       /* index + 1 of the first failed chunk not taken, or 0 */
  int sealed;        /* the caller will publish nothing more */
  int stopped;       /* cancelled or failed: claim nothing more */
  pool_waiter *caller;
  long caller_want;  /* chunk index the caller waits for; -1: any */
  pool_waiter *idle; /* runners parked until a publish */
  long *doneq;       /* finished chunks not yet taken, in finishing order */
  long dq_head, dq_tail;
};

/* ---- the job (pool.c), for the runner side (pool_runner.c) ----------- */

/* The job proxy at idx (raises if it is not one). */
pool_job *px_pool_check_job(lua_State *L, int idx);
/* Unlink every parked runner (lock held); wake them after unlocking. */
pool_waiter *px_pool_take_idle(pool_job *job);
void px_pool_wake_list(pool_waiter *w);
/* A chunk finished (lock held): queue it and return the caller to wake. */
pool_waiter *px_pool_chunk_finished(pool_job *job, long k, int state);
/* Unmarshal a copy of m (whose bytes stay for the next reader): the number
 * of values pushed, or -1 with a message pushed. */
int px_pool_unmarshal_copy(lua_State *L, const px_msg *m);

/* A parked task's waiter for job, prepared for px_park (raises when out
 * of memory). */
pool_waiter *px_pool_waiter_new(lua_State *L, pool_job *job, const char *what,
                                int (*deliver)(lua_State *, px_wait *),
                                void (*discard)(px_wait *), int (*cancel)(px_wait *));

/* The metatable `name` of a plain userdata whose __gc is gc, made once per
 * VM (pool_group.c). */
void px_pool_owner_meta(lua_State *L, const char *name, lua_CFunction gc);

/* pool_group.c: the group functions and metatable, added to the module
 * table on top of L. */
void px_pool_group_open(lua_State *L);

/* pool_runner.c: fn, claim, finish, finish_num, fail, abort. */
extern const luaL_Reg px_pool_runner_funcs[];

/* How a chunk's message was written (chunk.in_fast / out_fast). */
enum { PX_POOL_MARSHALLED = 0, PX_POOL_FAST_LIST = 1, PX_POOL_FAST_VALUE = 2 };

/* Encode the value at idx into m (empty) for another VM: through the
 * scalar fast lane when it can (as the list of items 1..count of the
 * table at idx when list), else the marshaller.  Returns how it was
 * written, or -1 with the marshaller's message pushed (m freed). */
int px_pool_encode(lua_State *L, int idx, int list, long count, px_msg *m);

/* Push the one value m holds (written by px_pool_encode with `how`) and
 * free m's contents.  Returns 1, or -1 with a message pushed. */
int px_pool_decode(lua_State *L, px_msg *m, int how, long count);

/* The numeric lane's buffers: at least n doubles (*cap gets the size), from a
 * small process-wide cache of already-faulted memory when it can. */
double *px_pool_buffer_get(size_t n, size_t *cap);
void px_pool_buffer_put(double *p, size_t cap);

#endif
