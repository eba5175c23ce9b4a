/* pool.h -- shared between pool.c (jobs) and pool_lane.c (transfer
 * lanes); private to the pool module. */
#ifndef PX_POOL_H
#define PX_POOL_H

#include <stddef.h>

#include "../core/px.h"

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

/* Numeric-lane buffers: at least n doubles (*cap gets the size), from a
 * small process-wide cache of already-faulted memory when it can. */
double *px_pool_lane_get(size_t n, size_t *cap);
void px_pool_lane_put(double *p, size_t cap);

#endif
