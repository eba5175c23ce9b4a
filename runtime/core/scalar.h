/*
 * scalar.h -- the one encoding of scalar values (nil, booleans, numbers,
 * strings, 64-bit integer cdata and the NULL light userdata) in bytes.
 *
 * Every path that copies a value from one VM to another writes scalars
 * this way: the marshaller (marshal.c, unmarshal.c) inside its messages, a
 * channel's value in flight (mod/slot.c) inside the slot itself, and the
 * pool's fast lane (mod/pool_transfer.c) for chunks of plain items.  The bytes
 * are those of the wire format documented at the top of marshal.c; the tag
 * values below are that format's, shared with the tags of tables,
 * functions and the rest, which only the marshaller writes.
 *
 * The writers are inline: they sit on the marshaller's hottest path (an
 * array of a million numbers that are not a run of doubles) and on every
 * channel send.
 */
#ifndef PX_SCALAR_H
#define PX_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "px.h"

/* Tags of the wire format (marshal.c documents each payload). */
enum {
  T_NIL = 0x00, T_FALSE = 0x01, T_TRUE = 0x02,
  T_INT16 = 0x03, T_INT32 = 0x04, T_DOUBLE = 0x05,
  T_STR = 0x06, T_TABLE = 0x07, T_TABLE_MT = 0x08, T_DOUBLES = 0x09,
  T_REF = 0x0a, T_FUNC = 0x0b, T_UPJOIN = 0x0c, T_CFUNC = 0x0d,
  T_MODULE = 0x0e, T_SHARED = 0x0f,
  T_INT64 = 0x10, T_UINT64 = 0x11, T_NULL = 0x12,
  T_SHORTSTR = 0x40, T_TINYINT = 0x80
};

/* Bytes a number takes at most (tag and double); a string of len bytes
 * takes at most len + PX_SCALAR_STR_EXTRA. */
#define PX_SCALAR_NUM_MAX 9
#define PX_SCALAR_STR_EXTRA 11
#define LUA_TCDATA_ 10 /* LuaJIT's type number for FFI cdata */

/* Write the number d at p: the smallest of a tiny integer, an i16, an i32
 * (integral values that fit, -0.0 excluded) or the exact IEEE bits.
 * Returns the bytes written (1, 3, 5 or 9). */
static inline size_t px_scalar_put_number(uint8_t *p, double d) {
  if (d >= -2147483648.0 && d <= 2147483647.0) {
    int32_t i = (int32_t)d;
    if ((double)i == d && !(i == 0 && signbit(d))) {
      if (i >= 0 && i < 128) {
        p[0] = (uint8_t)(T_TINYINT + i);
        return 1;
      }
      if (i >= -32768 && i <= 32767) {
        int16_t s = (int16_t)i;
        p[0] = T_INT16;
        memcpy(p + 1, &s, 2);
        return 3;
      }
      p[0] = T_INT32;
      memcpy(p + 1, &i, 4);
      return 5;
    }
  }
  p[0] = T_DOUBLE;
  memcpy(p + 1, &d, 8);
  return 9;
}

/* Write the string s of len bytes at p (room: len + PX_SCALAR_STR_EXTRA).
 * Returns the bytes written. */
static inline size_t px_scalar_put_string(uint8_t *p, const char *s, size_t len) {
  size_t n = 0;
  if (len < 64) {
    p[n++] = (uint8_t)(T_SHORTSTR + len);
  } else {
    p[n++] = T_STR;
    uint64_t v = len;
    while (v >= 0x80) {
      p[n++] = (uint8_t)((v & 0x7f) | 0x80);
      v >>= 7;
    }
    p[n++] = (uint8_t)v;
  }
  memcpy(p + n, s, len);
  return n + len;
}

/* Write the plain scalar at idx (nil, a boolean, a number, or a string of
 * that fits with its tag; the NULL light userdata) into
 * p[0 .. cap).  Returns the bytes written, or 0 when the value is none of
 * these or does not fit (the caller takes the marshaller instead: int64
 * cdata need a call into Lua, see px_scalar_put_cdata).  cap >= 9. */
static inline size_t px_scalar_put(lua_State *L, int idx, uint8_t *p, size_t cap) {
  switch (lua_type(L, idx)) {
  case LUA_TNONE:
  case LUA_TNIL: p[0] = T_NIL; return 1;
  case LUA_TBOOLEAN: p[0] = lua_toboolean(L, idx) ? T_TRUE : T_FALSE; return 1;
  case LUA_TNUMBER: return px_scalar_put_number(p, lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (len >= cap || len + (len < 64 ? 1 : PX_SCALAR_STR_EXTRA) > cap) return 0;
    return px_scalar_put_string(p, s, len);
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) != NULL) return 0;
    p[0] = T_NULL;
    return 1;
  default: return 0;
  }
}

/* If the cdata at idx is an int64_t or a uint64_t (`1LL`, `0ULL`), write
 * it at p (room: 9 bytes) and return 9; else 0.  Asks LuaJIT's FFI through
 * its public interface (ffi.istype), in a protected call. */
size_t px_scalar_put_cdata(lua_State *L, int idx, uint8_t *p);

/* Is tag the first byte of a scalar? */
static inline int px_scalar_tag(unsigned tag) {
  return tag <= T_STR || tag >= T_SHORTSTR || (tag >= T_INT64 && tag <= T_NULL);
}

/* A scalar read back without Lua (a host thread's channel receive). */
typedef struct px_scalar {
  int type;        /* LUA_TNIL, LUA_TBOOLEAN, LUA_TNUMBER, LUA_TSTRING,
                      LUA_TLIGHTUSERDATA (NULL) or LUA_TCDATA_ (int64) */
  int boolean;
  int is_unsigned; /* LUA_TCDATA_: a uint64_t */
  double num;
  int64_t bits;    /* LUA_TCDATA_: the integer's 8 bytes */
  const char *str; /* LUA_TSTRING: inside p, not NUL-terminated */
  size_t len;
} px_scalar;

/* Read the scalar at p[0 .. len) into out and return the bytes it took;
 * 0 if p does not start with a whole scalar.  Safe on any bytes. */
size_t px_scalar_read(const uint8_t *p, size_t len, px_scalar *out);

/* Push the scalar at p[0 .. len) and return the bytes it took; 0 (nothing
 * pushed) if p does not start with a whole scalar.  Safe on any bytes. */
size_t px_scalar_get(lua_State *L, const uint8_t *p, size_t len);

#endif
