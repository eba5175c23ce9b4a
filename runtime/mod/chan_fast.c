/*
 * chan_fast.c -- the FFI fast path of ch:send and ch:recv for plain
 * scalars (numbers, short strings, booleans, nil).
 *
 * A LuaJIT FFI call is compiled into the caller's trace; a lua_CFunction
 * call is not (the trace ends or stitches around it), and it pays for the
 * Lua stack on both sides.  So lua/parx/chan.lua calls these functions
 * through a table of function pointers (px_chan_fast_api) first, and the
 * C functions of chan.c only when they decline.  They decline (return 0,
 * having changed nothing) whenever the operation would not complete at
 * once: the channel is full or empty, closed, holds another kind of value
 * next, or the proxy was collected.  So they never park, never raise and
 * never call into Lua; every error, and every wait, is the C path's, with
 * its messages.
 *
 * The proxy comes as the userdata's payload (the FFI passes a userdata to
 * a void * parameter that way): chan.lua passes only proxies that the C
 * path has already accepted as channels (it keeps them in a weak set), so
 * the payload is a px_chan pointer, NULL once the proxy was collected.
 */
#include <string.h>

#include "chan.h"

/* What a fast receive returns besides its kind (see fast_recv). */
typedef struct px_chan_fast_value {
  double num;
  int32_t len;
  char str[SLOT_INLINE];
} px_chan_fast_value;

typedef struct px_chan_fast_api_t {
  int (*send_number)(void *proxy, double d, int retry);
  int (*send_string)(void *proxy, const char *s, size_t len, int retry);
  int (*recv)(void *proxy, px_chan_fast_value *out, int retry);
} px_chan_fast_api_t;

/* Send v if that completes now (retry: or after a few retries of a full
 * lock-free buffer, px_chan_try_fast; select's pass does not): 1, else 0
 * (nothing changed). */
static int fast_send(void *proxy, px_slot *v, int retry) {
  px_chan *ch = *(px_chan **)proxy;
  /* A declined scalar slot owns nothing: no free. */
  return ch && (retry ? px_chan_try_fast(ch, PX_CHAN_SEND, v) : px_chan_try(ch, PX_CHAN_SEND, v)) == 1;
}

static int send_number(void *proxy, double d, int retry) {
  px_slot v;
  v.tag = SLOT_SCALAR;
  v.len = (uint8_t)px_scalar_put_number((uint8_t *)v.str, d);
  return fast_send(proxy, &v, retry);
}

static int send_string(void *proxy, const char *s, size_t len, int retry) {
  if (len >= SLOT_INLINE) return 0; /* a tag byte and the bytes must fit */
  px_slot v;
  v.tag = SLOT_SCALAR;
  v.len = (uint8_t)px_scalar_put_string((uint8_t *)v.str, s, len);
  return fast_send(proxy, &v, retry);
}

/* Receive a plain scalar if one is there now.  Returns 0 (nothing taken),
 * 1 a number in out->num, 2 a string in out->str (out->len bytes), 3 false,
 * 4 true, 5 nil. */
static int fast_recv(void *proxy, px_chan_fast_value *out, int retry) {
  px_chan *ch = *(px_chan **)proxy;
  if (!ch) return 0;
  px_slot v;
  if ((retry ? px_chan_try_fast(ch, PX_CHAN_RECV_PLAIN, &v) : px_chan_try(ch, PX_CHAN_RECV_PLAIN, &v)) != 1)
    return 0;
  px_scalar s;
  px_scalar_read((const uint8_t *)v.str, v.len, &s);
  switch (s.type) {
  case LUA_TNUMBER: out->num = s.num; return 1;
  case LUA_TSTRING:
    memcpy(out->str, s.str, s.len);
    out->len = (int32_t)s.len;
    return 2;
  case LUA_TBOOLEAN: return s.boolean ? 4 : 3;
  default: return 5; /* px_slot_is_plain: nil */
  }
}

static const px_chan_fast_api_t api = {send_number, send_string, fast_recv};

const void *px_chan_fast_api(void) { return &api; }
