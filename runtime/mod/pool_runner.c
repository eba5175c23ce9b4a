/* pool_runner.c -- the worker side of a pool job: the runner tasks that
 * lua/parx/pool.lua starts, one per worker, take the job's function
 * (fn), claim chunk after chunk, and hand back each chunk's results
 * (finish, finish_num) or its error (fail, abort).  The job itself and
 * the caller's side are in pool.c; the types they share in pool.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/px.h"
#include "pool.h"

/* fn(job) -> the job's function and mode, unmarshalled in this VM */
static int l_fn(lua_State *L) {
  pool_job *job = px_pool_check_job(L, 1);
  int n = px_pool_unmarshal_copy(L, &job->fn);
  if (n < 0) return lua_error(L);
  if (n != 1) return luaL_error(L, "pool job: bad function message");
  lua_pushinteger(L, job->mode);
  return 2;
}

static int runner_deliver(lua_State *co, px_wait *wait) {
  free(wait);
  lua_pushboolean(co, 0); /* claim again */
  return 1;
}

static void runner_discard(px_wait *wait) { free(wait); }

static int runner_cancel(px_wait *wait) {
  pool_waiter *w = (pool_waiter *)wait;
  pool_job *job = w->job;
  pthread_mutex_lock(&job->lock);
  pool_waiter **pp = &job->idle;
  while (*pp && *pp != w) pp = &(*pp)->next;
  int attached = *pp == w;
  if (attached) *pp = w->next;
  pthread_mutex_unlock(&job->lock);
  if (!attached) return 0;
  free(w);
  return 1;
}

/* Record a failure of chunk k with the value on top of L (popped). */
static void fail_chunk(lua_State *L, pool_job *job, long k) {
  chunk *c = &job->chunks[k];
  px_trace_chunk_end(L);
  px_msg_free(&c->out);
  px_msg_init(&c->out);
  c->out_fast = 0;
  if (px_marshal(L, -1, 1, &c->out) != 0) {
    /* The error value itself cannot cross: send its description. */
    const char *why = lua_tostring(L, -1);
    lua_pushfstring(L, "pool: the error raised by the function cannot be sent back: %s", why ? why : "?");
    px_msg_free(&c->out);
    px_msg_init(&c->out);
    px_marshal(L, -1, 1, &c->out);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  pthread_mutex_lock(&job->lock);
  job->stopped = 1;
  pool_waiter *w = px_pool_chunk_finished(job, k, CH_FAILED);
  pool_waiter *idle = px_pool_take_idle(job);
  pthread_mutex_unlock(&job->lock);
  if (w) px_wake(&w->wait);
  px_pool_wake_list(idle);
}

/* claim(job) -> k, items, count, base (map modes; items is nil when they
 *                 are in the numeric lane) | k, lo, hi (MODE_FOR)
 *             | false (parked meanwhile: claim again) | nil (no more work) */
static int l_claim(lua_State *L) {
  pool_job *job = px_pool_check_job(L, 1);
  pthread_mutex_lock(&job->lock);
  if (job->stopped || job->next >= job->nchunks) {
    pthread_mutex_unlock(&job->lock);
    return 0;
  }
  if (job->next >= job->published) {
    if (job->sealed) {
      pthread_mutex_unlock(&job->lock);
      return 0;
    }
    pthread_mutex_unlock(&job->lock);
    /* Nothing published yet: park until the caller publishes. */
    px_check_can_park(L); /* raise before allocating */
    pool_waiter *w = px_pool_waiter_new(L, job, "pool work (the caller has not published it yet)",
                                        runner_deliver, runner_discard, runner_cancel);
    pthread_mutex_lock(&job->lock);
    if (job->stopped || job->next < job->published || job->sealed) {
      pthread_mutex_unlock(&job->lock);
      px_wake(&w->wait);
    } else {
      w->next = job->idle;
      job->idle = w;
      pthread_mutex_unlock(&job->lock);
    }
    return px_park(L, &w->wait);
  }
  long k = job->next++;
  chunk *c = &job->chunks[k];
  c->state = CH_CLAIMED;
  pthread_mutex_unlock(&job->lock);
  px_trace_chunk_begin(L, job->mode == MODE_FOR ? job->first + (int64_t)k * job->per : c->base + 1, c->count, job->nchunks - k - 1);
  lua_pushinteger(L, k + 1);
  if (job->mode == MODE_FOR) {
    int64_t lo = job->first + (int64_t)k * job->per;
    lua_pushnumber(L, (lua_Number)lo);
    lua_pushnumber(L, (lua_Number)(lo + c->count - 1));
    return 3;
  }
  if (c->in_num) {
    lua_pushnil(L);
  } else if (px_pool_decode(L, &c->in, c->in_fast, c->count) < 0) {
    fail_chunk(L, job, k);
    return 0;
  }
  lua_pushinteger(L, c->count);
  lua_pushinteger(L, c->base);
  return 4;
}

/* The chunk named by argument 2, which this runner must have claimed. */
static chunk *claimed_chunk(lua_State *L, pool_job *job, long *k) {
  *k = (long)luaL_checkinteger(L, 2) - 1;
  if (*k < 0 || *k >= job->nchunks) luaL_argerror(L, 2, "no such chunk");
  chunk *c = &job->chunks[*k];
  if (c->state != CH_CLAIMED) luaL_error(L, "pool job: chunk %d was not claimed", (int)*k + 1);
  return c;
}

/* Chunk k is done: hand it to the caller, waking it if it waits. */
static void chunk_done(lua_State *L, pool_job *job, long k) {
  px_trace_chunk_end(L);
  pthread_mutex_lock(&job->lock);
  pool_waiter *w = px_pool_chunk_finished(job, k, CH_DONE);
  pthread_mutex_unlock(&job->lock);
  if (w) px_wake(&w->wait);
}

/* finish(job, k, value): the chunk's result. */
static int l_finish(lua_State *L) {
  pool_job *job = px_pool_check_job(L, 1);
  long k;
  chunk *c = claimed_chunk(L, job, &k);
  lua_settop(L, 3);
  int list = job->mode == MODE_MAP || job->mode == MODE_STARMAP;
  int fast = px_pool_encode(L, 3, list && lua_istable(L, 3), c->count, &c->out);
  if (fast < 0) {
    lua_pushfstring(L, "pool: a result cannot be sent back: %s", lua_tostring(L, -1));
    fail_chunk(L, job, k);
    return 0;
  }
  c->out_fast = (unsigned char)fast;
  chunk_done(L, job, k);
  return 0;
}

/* finish_num(job, k): the chunk's results are in out_nums. */
static int l_finish_num(lua_State *L) {
  pool_job *job = px_pool_check_job(L, 1);
  long k;
  chunk *c = claimed_chunk(L, job, &k);
  if (!job->out_nums) return luaL_argerror(L, 2, "no such chunk");
  c->out_num = 1;
  chunk_done(L, job, k);
  return 0;
}

/* fail(job, k, err) */
static int l_fail(lua_State *L) {
  pool_job *job = px_pool_check_job(L, 1);
  long k;
  claimed_chunk(L, job, &k);
  lua_settop(L, 3);
  fail_chunk(L, job, k);
  return 0;
}

/* abort(job, err): the runner cannot work at all (its function cannot be
 * rebuilt in this VM): fail the next chunk with err so the caller hears. */
static int l_abort(lua_State *L) {
  pool_job *job = px_pool_check_job(L, 1);
  lua_settop(L, 2);
  pthread_mutex_lock(&job->lock);
  long k = -1;
  if (!job->stopped && job->next < job->published) {
    k = job->next++;
    job->chunks[k].state = CH_CLAIMED;
  }
  pthread_mutex_unlock(&job->lock);
  if (k >= 0) fail_chunk(L, job, k);
  return 0;
}

const luaL_Reg px_pool_runner_funcs[] = {
    {"fn", l_fn},         {"claim", l_claim},   {"finish", l_finish},
    {"fail", l_fail},     {"abort", l_abort},   {"finish_num", l_finish_num},
    {NULL, NULL}};
