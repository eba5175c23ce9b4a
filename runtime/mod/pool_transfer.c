/* pool_transfer.c -- how a pool chunk's items and results cross between VMs
 * besides the marshaller: the scalar fast lane for small chunks, and the
 * cache of numeric-lane buffers (see pool.c for the lane itself).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../core/px.h"
#include "../core/scalar.h"
#include "pool.h"

/* ---- the scalar fast lane -------------------------------------------- */

/* Small chunks of plain scalars (nil, booleans, numbers, short strings)
 * skip the marshaller.  Its fixed cost per call (it refreshes its map of
 * loaded modules and clears its tables of seen objects, about a
 * microsecond) is most of what a chunk of one number costs, and
 * chunksize = 1 pays it four times per item.  Big chunks go through the
 * marshaller, which copies runs of numbers in bulk.  Format: the values
 * one after the other, each written by the one scalar encoder (scalar.h,
 * the marshaller's own encoding of scalars), without a segment header. */
#define FAST_MAX_ITEMS 32
#define FAST_MAX_STR 256

/* Append the value at idx; -1 if it is not a plain scalar. */
static int fast_encode_value(lua_State *L, int idx, px_msg *m) {
  size_t room = FAST_MAX_STR + PX_SCALAR_STR_EXTRA;
  if (m->cap - m->len < room) {
    size_t cap = m->cap ? m->cap : 64;
    while (cap - m->len < room) cap *= 2;
    char *d = realloc(m->data, cap);
    if (!d) return -1;
    m->data = d;
    m->cap = cap;
  }
  size_t n = px_scalar_put(L, idx, (uint8_t *)m->data + m->len, room);
  if (!n) return -1;
  m->len += n;
  return 0;
}

/* Items 1..count of the table at t; -1 if one is not a plain scalar. */
static int fast_encode_list(lua_State *L, int t, long count, px_msg *m) {
  if (count > FAST_MAX_ITEMS) return -1;
  for (long i = 1; i <= count; i++) {
    lua_rawgeti(L, t, (int)i);
    int rc = fast_encode_value(L, -1, m);
    lua_pop(L, 1);
    if (rc) return -1;
  }
  return 0;
}

/* Push the value at *p (written by fast_encode_value in this process). */
static void fast_decode_value(lua_State *L, const px_msg *m, size_t *at) {
  size_t n = px_scalar_get(L, (const uint8_t *)m->data + *at, m->len - *at);
  if (n) {
    *at += n;
  } else { /* cannot happen: this process wrote it */
    lua_pushnil(L);
    *at = m->len;
  }
}

static void fast_decode_list(lua_State *L, const px_msg *m, long count) {
  size_t at = 0;
  lua_createtable(L, (int)count, 0);
  for (long i = 1; i <= count; i++) {
    fast_decode_value(L, m, &at);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else lua_rawseti(L, -2, (int)i);
  }
}

/* Encode the value at idx into m for the other side: the fast lane when
 * it can (as a list of count items when list), else the marshaller.
 * Returns PX_POOL_MARSHALLED, PX_POOL_FAST_LIST or PX_POOL_FAST_VALUE, or -1
 * with the marshaller's message pushed. */
int px_pool_encode(lua_State *L, int idx, int list, long count, px_msg *m) {
  int rc = list ? fast_encode_list(L, idx, count, m) : fast_encode_value(L, idx, m);
  if (rc == 0) return list ? PX_POOL_FAST_LIST : PX_POOL_FAST_VALUE;
  m->len = 0;
  if (px_marshal(L, idx, 1, m) != 0) {
    px_msg_free(m);
    px_msg_init(m);
    return -1;
  }
  return 0;
}

/* Push the value encoded by px_pool_encode and free m's contents.
 * Returns 1, or -1 with a message pushed. */
int px_pool_decode(lua_State *L, px_msg *m, int fast, long count) {
  int n = 1;
  if (fast == PX_POOL_FAST_LIST) {
    fast_decode_list(L, m, count);
  } else if (fast == PX_POOL_FAST_VALUE) {
    size_t at = 0;
    fast_decode_value(L, m, &at);
  } else {
    n = px_unmarshal(L, m);
    if (n == 0) lua_pushnil(L);
    else if (n > 1) lua_pop(L, n - 1);
    if (n > 1) n = 1;
  }
  px_msg_free(m);
  px_msg_init(m);
  return n < 0 ? -1 : 1;
}

/* ---- numeric lane buffers -------------------------------------------- */

/* Freed lane buffers are kept for the next job: a fresh buffer is fresh
 * memory, and faulting in 8 MB (a million items) costs the caller more
 * than writing it.  At most BUFFER_KEEP buffers of BUFFER_KEEP_MAX doubles
 * each (64 MiB in all) stay cached for the life of the process. */
#define BUFFER_KEEP 4
#define BUFFER_KEEP_MAX ((size_t)2 << 20)
static pthread_mutex_t buffer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { double *p; size_t cap; } buffer_cache[BUFFER_KEEP];

/* Big buffers are mapped on 2 MiB boundaries as transparent huge pages
 * where the kernel offers them (madvise mode): the first pool.map of a
 * million numbers faulted in 16 MB of lane buffers a 4 KiB page at a time,
 * ~4,000 page faults that made it twice as slow as the next call (perf:
 * exc_page_fault under the caller's copy and the runners' stores).  With
 * huge pages that is 8 faults.  Smaller buffers come from malloc. */
#define HUGE_PAGE ((size_t)2 << 20)
#define MAPPED_MIN HUGE_PAGE /* bytes from which a buffer is mapped */

static size_t mapped_bytes(size_t cap) {
  return (sizeof(double) * cap + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

static double *buffer_alloc(size_t n) {
  if (sizeof(double) * n < MAPPED_MIN) return malloc(sizeof(double) * n);
  size_t bytes = mapped_bytes(n);
  char *p = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  /* Trim to a 2 MiB-aligned range of `bytes`. */
  char *aligned = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
  if (aligned > p) munmap(p, (size_t)(aligned - p));
  size_t tail = (size_t)(p + bytes + HUGE_PAGE - (aligned + bytes));
  if (tail) munmap(aligned + bytes, tail);
#ifdef MADV_HUGEPAGE
  madvise(aligned, bytes, MADV_HUGEPAGE); /* a hint: fine if refused */
#endif
  return (double *)aligned;
}

static void buffer_release(double *p, size_t cap) {
  if (!p) return;
  if (sizeof(double) * cap < MAPPED_MIN) free(p);
  else munmap(p, mapped_bytes(cap));
}

/* A buffer of at least n doubles; *cap gets its size. */
double *px_pool_buffer_get(size_t n, size_t *cap) {
  int best = -1;
  pthread_mutex_lock(&buffer_lock);
  for (int i = 0; i < BUFFER_KEEP; i++)
    if (buffer_cache[i].p && buffer_cache[i].cap >= n && (best < 0 || buffer_cache[i].cap < buffer_cache[best].cap))
      best = i;
  double *p = NULL;
  if (best >= 0) {
    p = buffer_cache[best].p;
    *cap = buffer_cache[best].cap;
    buffer_cache[best].p = NULL;
  }
  pthread_mutex_unlock(&buffer_lock);
  if (!p) {
    p = buffer_alloc(n);
    *cap = n;
  }
  return p;
}

void px_pool_buffer_put(double *p, size_t cap) {
  if (!p) return;
  if (cap <= BUFFER_KEEP_MAX) {
    int slot = -1;
    pthread_mutex_lock(&buffer_lock);
    for (int i = 0; i < BUFFER_KEEP; i++) {
      if (!buffer_cache[i].p) { slot = i; break; }
      if (buffer_cache[i].cap < cap && (slot < 0 || buffer_cache[i].cap < buffer_cache[slot].cap)) slot = i;
    }
    double *evict = NULL;
    size_t evict_cap = 0;
    if (slot >= 0) {
      evict = buffer_cache[slot].p;
      evict_cap = buffer_cache[slot].cap;
      buffer_cache[slot].p = p;
      buffer_cache[slot].cap = cap;
      p = NULL;
    }
    pthread_mutex_unlock(&buffer_lock);
    buffer_release(evict, evict_cap);
  }
  buffer_release(p, cap);
}
