/*
 * slot.h -- one value in flight through a channel (slot.c): what a
 * channel's buffer and its parked senders and receivers hold.
 */
#ifndef PX_SLOT_H
#define PX_SLOT_H

#include <stdint.h>

#include "../core/px.h"
#include "../core/scalar.h"

struct parx_value;

/* Scalars that fit (nil, booleans, numbers, strings up to SLOT_INLINE - 1
 * bytes, the NULL light userdata) are written into the slot itself by the
 * one scalar encoder (core/scalar.h), so the common message allocates
 * nothing; longer strings are one malloc'd copy of their bytes; everything
 * else (tables, functions, shared objects, 64-bit integers) is a px_msg
 * from the marshaller. */
enum { SLOT_NIL, SLOT_SCALAR, SLOT_BYTES, SLOT_MSG };
#define SLOT_INLINE 22

typedef struct px_slot {
  uint8_t tag;
  union {
    uint8_t len;       /* SLOT_SCALAR: bytes of str in use */
    uint8_t weak_self; /* SLOT_MSG in a channel's buffer: the references to
                          that channel the message holds but does not count
                          (chan.c: ring_push) */
  };
  char str[SLOT_INLINE];
  union {
    px_msg *msg;
    struct px_bytes *bytes;
  } u;
} px_slot;

typedef struct px_bytes {
  size_t len;
  char data[];
} px_bytes;

/* Whether s holds nil, a boolean, a number or a short string: what the
 * channel's FFI path (chan_fast.c) hands to Lua without a lua_State. */
static inline int px_slot_is_plain(const px_slot *s) {
  if (s->tag != SLOT_SCALAR) return 0;
  unsigned tag = (uint8_t)s->str[0];
  return tag <= T_DOUBLE || tag >= T_SHORTSTR;
}

/* Encode the value at idx into s.  Returns 0, or -1 with an error message
 * pushed (a value the marshaller cannot send). */
int px_slot_encode(lua_State *L, int idx, px_slot *s);
/* Push the value of s and consume s.  Returns 0, or -1 with an error message
 * pushed (s is consumed either way). */
int px_slot_decode(lua_State *L, px_slot *s);
void px_slot_free(px_slot *s);

/* The same for a host thread (parx.h's parx_value; no Lua): from_host
 * returns 0, or -1 when out of memory; to_host consumes s and returns
 * PARX_CHAN_OK or PARX_CHAN_ERRMEM (a value a host cannot hold arrives as
 * PARX_VALUE_OTHER). */
int px_slot_from_host(const struct parx_value *v, px_slot *s);
int px_slot_to_host(px_slot *s, struct parx_value *out);

#endif
