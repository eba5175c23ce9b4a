/* pool_lane.c -- how a pool chunk's items and results cross between VMs
 * besides the marshaller: the scalar fast lane for small chunks, and the
 * cache of numeric-lane buffers (see pool.c for the lane itself).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/px.h"
#include "pool.h"

/* ---- the scalar fast lane -------------------------------------------- */

/* Small chunks of plain scalars (nil, booleans, numbers, short strings)
 * skip the marshaller.  Its fixed cost per call (it refreshes its map of
 * loaded modules and clears its tables of seen objects, about a
 * microsecond) is most of what a chunk of one number costs, and
 * chunksize = 1 pays it four times per item.  Big chunks go through the
 * marshaller, which copies runs of numbers in bulk.  Format: per value a
 * tag byte, then 8 bytes of double or a u32 length and the bytes. */
#define FAST_MAX_ITEMS 32
#define FAST_MAX_STR 256
enum { F_NIL, F_FALSE, F_TRUE, F_NUM, F_STR };

static int fast_put(px_msg *m, const void *p, size_t n) {
  if (m->len + n > m->cap) {
    size_t cap = m->cap ? m->cap : 64;
    while (cap < m->len + n) cap *= 2;
    char *d = realloc(m->data, cap);
    if (!d) return -1;
    m->data = d;
    m->cap = cap;
  }
  memcpy(m->data + m->len, p, n);
  m->len += n;
  return 0;
}

/* Append the value at idx; -1 if it is not a plain scalar. */
static int fast_encode_value(lua_State *L, int idx, px_msg *m) {
  unsigned char tag;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    tag = F_NIL;
    return fast_put(m, &tag, 1);
  case LUA_TBOOLEAN:
    tag = lua_toboolean(L, idx) ? F_TRUE : F_FALSE;
    return fast_put(m, &tag, 1);
  case LUA_TNUMBER: {
    unsigned char buf[9];
    double d = lua_tonumber(L, idx);
    buf[0] = F_NUM;
    memcpy(buf + 1, &d, 8);
    return fast_put(m, buf, 9);
  }
  case LUA_TSTRING: {
    size_t len;
    const char *str = lua_tolstring(L, idx, &len);
    if (len > FAST_MAX_STR) return -1;
    unsigned char buf[5];
    uint32_t n32 = (uint32_t)len;
    buf[0] = F_STR;
    memcpy(buf + 1, &n32, 4);
    return fast_put(m, buf, 5) || fast_put(m, str, len) ? -1 : 0;
  }
  default:
    return -1;
  }
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
static void fast_decode_value(lua_State *L, const char **p) {
  unsigned char tag = (unsigned char)**p;
  (*p)++;
  switch (tag) {
  case F_NIL: lua_pushnil(L); break;
  case F_FALSE: lua_pushboolean(L, 0); break;
  case F_TRUE: lua_pushboolean(L, 1); break;
  case F_NUM: {
    double d;
    memcpy(&d, *p, 8);
    *p += 8;
    lua_pushnumber(L, d);
    break;
  }
  default: {
    uint32_t n32;
    memcpy(&n32, *p, 4);
    *p += 4;
    lua_pushlstring(L, *p, n32);
    *p += n32;
    break;
  }
  }
}

static void fast_decode_list(lua_State *L, const px_msg *m, long count) {
  const char *p = m->data;
  lua_createtable(L, (int)count, 0);
  for (long i = 1; i <= count; i++) {
    fast_decode_value(L, &p);
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
    const char *p = m->data;
    fast_decode_value(L, &p);
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
 * than writing it.  At most LANE_KEEP buffers of LANE_KEEP_MAX doubles
 * each (64 MiB in all) stay cached for the life of the process. */
#define LANE_KEEP 4
#define LANE_KEEP_MAX ((size_t)2 << 20)
static pthread_mutex_t lane_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { double *p; size_t cap; } lane_cache[LANE_KEEP];

/* A buffer of at least n doubles; *cap gets its size. */
double *px_pool_lane_get(size_t n, size_t *cap) {
  int best = -1;
  pthread_mutex_lock(&lane_lock);
  for (int i = 0; i < LANE_KEEP; i++)
    if (lane_cache[i].p && lane_cache[i].cap >= n && (best < 0 || lane_cache[i].cap < lane_cache[best].cap))
      best = i;
  double *p = NULL;
  if (best >= 0) {
    p = lane_cache[best].p;
    *cap = lane_cache[best].cap;
    lane_cache[best].p = NULL;
  }
  pthread_mutex_unlock(&lane_lock);
  if (!p) {
    p = malloc(sizeof(double) * n);
    *cap = n;
  }
  return p;
}

void px_pool_lane_put(double *p, size_t cap) {
  if (!p) return;
  if (cap <= LANE_KEEP_MAX) {
    int slot = -1;
    pthread_mutex_lock(&lane_lock);
    for (int i = 0; i < LANE_KEEP; i++) {
      if (!lane_cache[i].p) { slot = i; break; }
      if (lane_cache[i].cap < cap && (slot < 0 || lane_cache[i].cap < lane_cache[slot].cap)) slot = i;
    }
    double *evict = NULL;
    if (slot >= 0) {
      evict = lane_cache[slot].p;
      lane_cache[slot].p = p;
      lane_cache[slot].cap = cap;
      p = NULL;
    }
    pthread_mutex_unlock(&lane_lock);
    free(evict);
  }
  free(p);
}
