/* pool.c -- the map job behind parx.pool.
 *
 * One pool call (map, imap, starmap, reduce, parallel_for) is one job: a
 * px_shared object holding the function marshalled ONCE and an array of
 * chunk slots.  The caller marshals the input chunk by chunk into the slots
 * and publishes each one as soon as it is written, so the workers start on
 * chunk 1 while the caller is still writing chunk 2.  One long-lived runner
 * task per worker (lua/parx/pool.lua spawns them) unmarshals the function
 * once, claims chunk after chunk (an index under the job's lock), runs the
 * function over every item in a plain Lua loop the JIT compiles, and
 * marshals the chunk's results into the slot.  The caller parks on the job
 * and is woken only when a result it waits for is ready; it never spins.
 *
 * Two Lua faces:
 *   - the owner: a plain userdata held by the caller only.  When it is
 *     collected (a caller that broke out of an imap loop, an error) the job
 *     is cancelled, so runners stop claiming work nobody will read.
 *   - the job proxy: a px_shared proxy; it is what the runners receive.
 *
 * How items and results cross, cheapest first:
 *   - the numeric lane (map): a chunk of numbers is written straight into
 *     a per-job array of doubles by a JIT-compiled FFI loop and read back
 *     the same way; numeric results likewise.  No marshalling, no table.
 *   - the scalar fast lane (pool_transfer.c): small chunks of plain scalars
 *     skip the marshaller's fixed cost per call.
 *   - the marshaller for anything else, one message per chunk each way.
 * Cost, written down: the caller still copies every item out of the
 * user's list and every result into a fresh result table; a million-item
 * result table is 8 MB of fresh memory (LuaJIT maps big arrays straight
 * from the system), whose page faults are about half of the caller's time
 * in a map of x*x.  Unmarshalling straight into the result table would
 * not change that; only reusing the caller's memory would.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/px.h"
#include "../core/numbers.h"
#include "pool.h"

#define JOB_MT "parx.pool.job"
#define OWNER_MT "parx.pool.owner"

typedef struct owner {
  pool_job *job; /* one reference */
} owner;

static void job_free(px_shared *s);

/* Initialized here, never written after: every VM's px_open_pool used to
 * fill in the name and the free function while other threads read them
 * through the jobs they release (a data race TSan reports). */
static px_shared_type job_type = {.name = JOB_MT, .free = job_free};

/* ---- the job --------------------------------------------------------- */

static void job_free(px_shared *s) {
  pool_job *job = (pool_job *)s;
  px_msg_free(&job->fn);
  px_pool_buffer_put(job->in_nums, job->buffer_cap); /* out_nums is the same buffer */
  for (long i = 0; i < job->nchunks; i++) {
    px_msg_free(&job->chunks[i].in);
    px_msg_free(&job->chunks[i].out);
  }
  free(job->chunks);
  free(job->doneq);
  pthread_mutex_destroy(&job->lock);
  free(job);
}

/* Unlink every parked runner.  lock held; wake them after unlocking. */
pool_waiter *px_pool_take_idle(pool_job *job) {
  pool_waiter *w = job->idle;
  job->idle = NULL;
  return w;
}

void px_pool_wake_list(pool_waiter *w) {
  while (w) {
    pool_waiter *next = w->next;
    w->next = NULL;
    px_wake(&w->wait);
    w = next;
  }
}

/* Stop handing out chunks; parked runners wake and end. */
static void job_stop(pool_job *job) {
  pthread_mutex_lock(&job->lock);
  job->stopped = 1;
  pool_waiter *idle = px_pool_take_idle(job);
  pthread_mutex_unlock(&job->lock);
  px_pool_wake_list(idle);
}

/* Whether the caller waiting for `want` has something to read.  lock held. */
static int caller_can_go(pool_job *job, long want) {
  if (job->failed) return 1;
  if (want < 0) return job->dq_head < job->dq_tail;
  return job->chunks[want].state >= CH_DONE;
}

/* A chunk finished (lock held): queue it and pick the caller to wake. */
pool_waiter *px_pool_chunk_finished(pool_job *job, long k, int state) {
  chunk *c = &job->chunks[k];
  c->state = state;
  job->ndone++;
  if (state == CH_DONE) job->items_done += c->count;
  job->doneq[job->dq_tail++] = k;
  if (state == CH_FAILED && !job->failed) job->failed = k + 1;
  pool_waiter *w = NULL;
  if (job->caller && caller_can_go(job, job->caller_want)) {
    w = job->caller;
    job->caller = NULL;
  }
  return w;
}

pool_waiter *px_pool_waiter_new(lua_State *L, pool_job *job, const char *what,
                                int (*deliver)(lua_State *, px_wait *),
                                void (*discard)(px_wait *), int (*cancel)(px_wait *)) {
  pool_waiter *w = calloc(1, sizeof *w);
  if (!w) px_oom(L, "pool wait");
  w->wait.what = what;
  w->wait.deliver = deliver;
  w->wait.discard = discard;
  w->wait.cancel = cancel;
  w->job = job;
  px_wait_prepare(L, &w->wait);
  return w;
}

pool_job *px_pool_check_job(lua_State *L, int idx) {
  return (pool_job *)px_shared_check(L, idx, &job_type);
}

static pool_job *check_owner(lua_State *L, int idx) {
  owner *o = luaL_checkudata(L, idx, OWNER_MT);
  if (!o->job) luaL_argerror(L, idx, "pool job is closed");
  return o->job;
}

/* Unmarshal a copy of m (whose bytes stay for the next reader).  Returns
 * the number of values pushed, or -1 with a message pushed. */
int px_pool_unmarshal_copy(lua_State *L, const px_msg *m) {
  px_msg copy;
  if (px_msg_copy(&copy, m) != 0) {
    lua_pushliteral(L, "not enough memory");
    return -1;
  }
  int n = px_unmarshal(L, &copy);
  px_msg_free(&copy);
  return n;
}

/* ---- caller side ----------------------------------------------------- */

static int owner_gc(lua_State *L) {
  pool_job *job = px_udata_take(L, 1);
  if (job) {
    job_stop(job);
    px_shared_release(&job->hdr);
  }
  return 0;
}

/* new(mode, fn, nchunks [, first, last, per]) -> owner; for MODE_MAP
 * new(mode, fn, nchunks, nitems) sets up the numeric lane.  MODE_FOR jobs
 * are published and sealed at once: their chunks are index ranges. */
static int l_new(lua_State *L) {
  int mode = (int)luaL_checkinteger(L, 1);
  luaL_checkany(L, 2);
  lua_Number nch = luaL_checknumber(L, 3);
  if (mode < MODE_MAP || mode > MODE_FOR) return luaL_argerror(L, 1, "bad mode");
  if (!(nch >= 0 && nch < 1e9)) return luaL_argerror(L, 3, "bad chunk count");
  long nchunks = (long)nch;
  pool_job *job = calloc(1, sizeof *job);
  if (!job) return px_oom(L, "pool job");
  px_shared_init(&job->hdr, &job_type);
  pthread_mutex_init(&job->lock, NULL);
  job->mode = mode;
  job->nchunks = nchunks;
  px_msg_init(&job->fn);
  job->chunks = calloc((size_t)(nchunks ? nchunks : 1), sizeof *job->chunks);
  job->doneq = calloc((size_t)(nchunks ? nchunks : 1), sizeof *job->doneq);
  /* The owner anchors the job at once, so an error below frees it. */
  owner *o = lua_newuserdata(L, sizeof *o);
  o->job = job;
  luaL_getmetatable(L, OWNER_MT);
  lua_setmetatable(L, -2);
  if (!job->chunks || !job->doneq) return px_oom(L, "pool job");
  for (long i = 0; i < nchunks; i++) {
    px_msg_init(&job->chunks[i].in);
    px_msg_init(&job->chunks[i].out);
  }
  if (px_marshal(L, 2, 1, &job->fn) != 0) return lua_error(L);
  if (mode == MODE_MAP && lua_isnumber(L, 4)) {
    lua_Number nitems = lua_tonumber(L, 4);
    if (nitems >= 1 && nitems < 1e10) {
      /* One buffer both ways: a runner reads item i before it writes
       * result i (pool_loops.lua), and each slot is one chunk's, so the
       * results overwrite their own items.  Half the memory to fault in
       * on a first call, and to stream through on every call. */
      job->in_nums = job->out_nums = px_pool_buffer_get((size_t)nitems, &job->buffer_cap);
      job->nitems = (long)nitems;
      if (!job->in_nums) return px_oom(L, "pool job");
    }
  }
  if (mode == MODE_FOR) {
    /* pool.lua checks these for the user; this keeps a direct call of
     * parx.c.pool from converting out-of-range doubles (undefined) or
     * overflowing the range arithmetic below. */
    lua_Number first = luaL_checknumber(L, 4), last = luaL_checknumber(L, 5);
    lua_Number per = luaL_checknumber(L, 6);
    const lua_Number max = 9007199254740992.0; /* 2^53 */
    if (!(first >= -max && first <= max) || first != floor(first))
      return luaL_argerror(L, 4, "first must be an integer within 2^53");
    if (!(last >= first && last <= max) || last != floor(last))
      return luaL_argerror(L, 5, "last must be an integer from first to 2^53");
    if (!(per >= 1 && per <= max) || per != floor(per))
      return luaL_argerror(L, 6, "range size must be an integer from 1 to 2^53");
    job->first = (int64_t)first;
    job->last = (int64_t)last;
    job->per = (int64_t)per;
    if (nchunks != (job->last - job->first + job->per) / job->per)
      return luaL_argerror(L, 3, "chunk count does not match the range");
    for (long i = 0; i < nchunks; i++) {
      int64_t lo = job->first + (int64_t)i * job->per;
      int64_t hi = lo + job->per - 1;
      job->chunks[i].count = (long)((hi < job->last ? hi : job->last) - lo + 1);
      job->chunks[i].state = CH_PUBLISHED;
    }
    job->published = nchunks;
    job->sealed = 1;
  }
  return 1;
}

/* buffers(owner or job) -> in_nums, out_nums as light userdata, or nothing */
static int l_buffers(lua_State *L) {
  owner *o = luaL_testudata(L, 1, OWNER_MT);
  pool_job *job = o ? o->job : px_pool_check_job(L, 1);
  if (!job) return 0;
  pthread_mutex_lock(&job->lock);
  double *in = job->in_nums, *out = job->out_nums;
  pthread_mutex_unlock(&job->lock);
  if (!in) return 0;
  lua_pushlightuserdata(L, in);
  lua_pushlightuserdata(L, out);
  return 2;
}

/* share(owner) -> a job proxy to hand to runners */
static int l_share(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  px_shared_retain(&job->hdr);
  px_shared_push(L, &job->hdr);
  return 1;
}

/* The next chunk to publish, with its base set; raises when none is left
 * or when count items would overrun the numeric lane. */
static chunk *next_chunk(lua_State *L, pool_job *job, long count, long *k) {
  pthread_mutex_lock(&job->lock);
  *k = job->published;
  int full = job->sealed || *k >= job->nchunks;
  pthread_mutex_unlock(&job->lock);
  if (full) luaL_error(L, "pool job: no chunk left to publish");
  /* Only the caller writes chunk k before it is published: no lock. */
  chunk *c = &job->chunks[*k];
  c->base = *k ? job->chunks[*k - 1].base + job->chunks[*k - 1].count : 0;
  /* With a numeric lane the runners read in_nums and write out_nums at
   * [base .. base + count - 1], whatever the chunk holds: stay inside. */
  if (job->in_nums && c->base + count > job->nitems)
    luaL_argerror(L, 3, "more items than the numeric lane holds");
  return c;
}

/* Hand chunk k (count items, written) to the runners. */
static void publish(pool_job *job, chunk *c, long k, long count) {
  c->count = count;
  pthread_mutex_lock(&job->lock);
  c->state = CH_PUBLISHED;
  job->published = k + 1;
  pool_waiter *w = job->idle;
  if (w) job->idle = w->next;
  if (job->published == job->nchunks) {
    /* Every chunk is out: runners still parked will find nothing more. */
    job->sealed = 1;
    if (w) w->next = px_pool_take_idle(job);
  } else if (w) {
    w->next = NULL;
  }
  pthread_mutex_unlock(&job->lock);
  px_pool_wake_list(w);
}

static long check_count(lua_State *L, int idx) {
  lua_Number cnt = luaL_checknumber(L, idx);
  if (!(cnt >= 0 && cnt <= 1e9) || cnt != floor(cnt)) luaL_argerror(L, idx, "bad item count");
  return (long)cnt;
}

/* put(owner, items, count): publish the next chunk, items[1 .. count]. */
static int l_put(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  long count = check_count(L, 3), k;
  chunk *c = next_chunk(L, job, count, &k);
  int fast = px_pool_encode(L, 2, 1, count, &c->in);
  if (fast < 0) return lua_error(L);
  c->in_fast = (unsigned char)fast;
  publish(job, c, k, count);
  return 0;
}

/* put_numbers(owner, list, count, first) -> true: list[first + 1 ..
 * first + count] are all numbers and went out as the next chunk through
 * the numeric lane (copied in C, straight from the table's array part);
 * false: one is not a number and nothing was published (put it instead). */
static int l_put_numbers(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  long count = check_count(L, 3), k;
  lua_Number first = luaL_checknumber(L, 4);
  if (!job->in_nums || !(first >= 0 && first < 2147483647.0)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  chunk *c = next_chunk(L, job, count, &k);
  size_t got = px_numbers_get(L, 2, (size_t)first + 1, (size_t)count, job->in_nums + c->base);
  if (got < (size_t)count) {
    lua_pushboolean(L, 0);
    return 1;
  }
  c->in_num = 1;
  publish(job, c, k, count);
  lua_pushboolean(L, 1);
  return 1;
}

/* seal(owner): nothing more will be published. */
static int l_seal(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  pthread_mutex_lock(&job->lock);
  job->sealed = 1;
  pool_waiter *idle = px_pool_take_idle(job);
  pthread_mutex_unlock(&job->lock);
  px_pool_wake_list(idle);
  return 0;
}

/* close(owner): the caller took every chunk.  The lane buffers go back to
 * the cache now instead of when the last VM collects its proxy: no runner
 * touches them once every chunk is done. */
static int l_close(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  pthread_mutex_lock(&job->lock);
  int all = job->ndone == job->nchunks && !job->failed;
  double *lane = NULL;
  if (all) {
    lane = job->in_nums;
    job->in_nums = job->out_nums = NULL;
    job->stopped = 1;
  }
  pthread_mutex_unlock(&job->lock);
  px_pool_buffer_put(lane, job->buffer_cap);
  return 0;
}

static int l_cancel(lua_State *L) {
  job_stop(check_owner(L, 1));
  return 0;
}

/* Index (0-based) of a chunk the caller can take for `want` (-1: any),
 * failures first; -1 if none.  lock held. */
static long readable(pool_job *job, long want) {
  if (job->failed) return job->failed - 1;
  if (want >= 0) return job->chunks[want].state >= CH_DONE && job->chunks[want].state != CH_TAKEN ? want : -1;
  while (job->dq_head < job->dq_tail) {
    long k = job->doneq[job->dq_head];
    if (job->chunks[k].state != CH_TAKEN) return k;
    job->dq_head++;
  }
  return -1;
}

static long check_want(lua_State *L, pool_job *job, int idx) {
  long k = (long)luaL_checkinteger(L, idx);
  if (k < 0 || k > job->nchunks) luaL_argerror(L, idx, "no such chunk");
  return k - 1; /* 0 -> -1: any */
}

/* ready(owner, k) -> index of a chunk to take (k itself, or a failed one),
 * or nil.  k = 0: any finished chunk (unordered). */
static int l_ready(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  long want = check_want(L, job, 2);
  pthread_mutex_lock(&job->lock);
  long k = readable(job, want);
  pthread_mutex_unlock(&job->lock);
  if (k < 0) return 0;
  lua_pushinteger(L, k + 1);
  return 1;
}

static void waiter_closed(uv_handle_t *h) { free(h->data); }

static void waiter_free(pool_waiter *w) {
  if (w->has_timer) {
    uv_timer_stop(&w->timer);
    w->timer.data = w;
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
  } else {
    free(w);
  }
}

static int caller_deliver(lua_State *co, px_wait *wait) {
  pool_waiter *w = (pool_waiter *)wait;
  lua_pushboolean(co, !w->timed_out);
  waiter_free(w);
  return 1;
}

static void waiter_discard(px_wait *wait) { waiter_free((pool_waiter *)wait); }

/* Detach w from its job if it is still the caller there: 1, or 0 when a
 * wake is already on its way to it. */
static int detach_caller(pool_waiter *w) {
  pool_job *job = w->job;
  pthread_mutex_lock(&job->lock);
  int attached = job->caller == w;
  if (attached) job->caller = NULL;
  pthread_mutex_unlock(&job->lock);
  return attached;
}

/* The caller was cancelled while parked: nobody will read the results. */
static int caller_cancel(px_wait *wait) {
  pool_waiter *w = (pool_waiter *)wait;
  if (!detach_caller(w)) return 0; /* a wake is on its way: discard frees w */
  job_stop(w->job);
  waiter_free(w);
  return 1;
}

static void caller_timeout(uv_timer_t *t) {
  pool_waiter *w = t->data;
  if (detach_caller(w)) {
    w->timed_out = 1;
    px_wake(&w->wait);
  }
}

/* wait(owner, k, timeout) -> true once ready(owner, k) would answer, false
 * when timeout seconds (nil: none) passed first.  Parks the caller. */
static int l_wait(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  long want = check_want(L, job, 2);
  double timeout = -1;
  if (!lua_isnoneornil(L, 3)) {
    timeout = luaL_checknumber(L, 3);
    if (timeout != timeout || timeout < 0) return luaL_argerror(L, 3, "timeout must be a non-negative number");
    if (timeout > 3e12) timeout = -1; /* math.huge: no limit (and no timer) */
  }
  px_check_can_park(L);
  pthread_mutex_lock(&job->lock);
  int go = readable(job, want) >= 0;
  pthread_mutex_unlock(&job->lock);
  if (go) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (timeout == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  pool_waiter *w = px_pool_waiter_new(L, job, "pool results", caller_deliver, waiter_discard,
                                      caller_cancel);
  if (timeout > 0) {
    px_vm *vm = px_vm_of(L);
    uv_timer_init(px_vm_loop(vm), &w->timer);
    w->timer.data = w;
    w->has_timer = 1;
    uv_update_time(px_vm_loop(vm));
    uv_timer_start(&w->timer, caller_timeout, (uint64_t)ceil(timeout * 1000.0), 0);
  }
  pthread_mutex_lock(&job->lock);
  if (readable(job, want) >= 0) {
    pthread_mutex_unlock(&job->lock);
    px_wake(&w->wait); /* finished between the check and here */
  } else {
    job->caller = w;
    job->caller_want = want;
    pthread_mutex_unlock(&job->lock);
  }
  return px_park(L, &w->wait);
}

/* take(owner, k [, dest [, from_one]]) -> true, value, count, base, in_lane
 * | false, error.  k must be what ready() answered.  in_lane: the results
 * were in the numeric lane (value is nil) and are copied, in C, into
 * dest[base + 1 .. base + count], or dest[1 .. count] with from_one. */
static int l_take(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  long k = check_want(L, job, 2);
  if (k < 0) return luaL_argerror(L, 2, "no such chunk");
  pthread_mutex_lock(&job->lock);
  chunk *c = &job->chunks[k];
  int state = c->state;
  if (state == CH_DONE || state == CH_FAILED) {
    c->state = CH_TAKEN;
    if (job->failed == k + 1) job->failed = 0;
  }
  pthread_mutex_unlock(&job->lock);
  if (state != CH_DONE && state != CH_FAILED) return luaL_error(L, "pool job: chunk %d is not ready", (int)k + 1);
  /* The chunk is ours now: no runner touches its out message again. */
  lua_pushboolean(L, state == CH_DONE);
  if (state == CH_DONE && c->out_num) {
    /* The results sit in the numeric lane: copy them into dest. */
    if (lua_istable(L, 3))
      px_numbers_set(L, 3, lua_toboolean(L, 4) ? 1 : (size_t)c->base + 1, (size_t)c->count,
                     job->out_nums + c->base);
    lua_pushnil(L);
  } else if (px_pool_decode(L, &c->out, c->out_fast, c->count) < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushinteger(L, c->count);
  lua_pushinteger(L, c->base);
  lua_pushboolean(L, state == CH_DONE && c->out_num);
  return 5;
}

/* progress(owner) -> items done, chunks done */
static int l_progress(lua_State *L) {
  pool_job *job = check_owner(L, 1);
  pthread_mutex_lock(&job->lock);
  long items = job->items_done, chunks = job->ndone;
  pthread_mutex_unlock(&job->lock);
  lua_pushinteger(L, items);
  lua_pushinteger(L, chunks);
  return 2;
}

/* ---- misc ------------------------------------------------------------ */

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static int l_workers(lua_State *L) {
  lua_pushinteger(L, px_runtime_workers(px_vm_runtime(px_vm_of(L))));
  return 1;
}

static const luaL_Reg funcs[] = {
    {"new", l_new},       {"share", l_share},   {"put", l_put},
    {"put_numbers", l_put_numbers},
    {"close", l_close},
    {"seal", l_seal},     {"cancel", l_cancel}, {"ready", l_ready},
    {"wait", l_wait},     {"take", l_take},     {"progress", l_progress},
    {"isatty", l_isatty}, {"buffers", l_buffers},
    {"workers", l_workers}, {NULL, NULL}};

int px_open_pool(lua_State *L) {
  px_shared_register(&job_type);
  px_shared_meta(L, &job_type);
  lua_pop(L, 1);
  px_pool_owner_meta(L, OWNER_MT, owner_gc);
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  luaL_setfuncs(L, px_pool_runner_funcs, 0);
  px_pool_group_open(L);
  static const struct { const char *name; int mode; } modes[] = {
    {"MAP", MODE_MAP}, {"STARMAP", MODE_STARMAP}, {"REDUCE", MODE_REDUCE}, {"FOR", MODE_FOR}};
  for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
    lua_pushinteger(L, modes[i].mode);
    lua_setfield(L, -2, modes[i].name);
  }
  return 1;
}
