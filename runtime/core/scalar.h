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

/* Read the scalar at p[0 .. len) into out (the fields of its type; the
 * others are left as they were) and return the bytes it took; 0 if p
 * does not start with a whole scalar.  Safe on any bytes.  Inline, like
 * px_scalar_get: it is the unmarshaller's hottest path. */
static inline size_t px_scalar_read(const uint8_t *p, size_t len, px_scalar *out) {
  out->type = -1; /* only the fields of out->type are set below */
  if (len < 1) return 0;
  unsigned tag = p[0];
  if (tag >= T_TINYINT) {
    out->type = LUA_TNUMBER;
    out->num = (double)(tag - T_TINYINT);
    return 1;
  }
  if (tag >= T_SHORTSTR) {
    size_t n = tag - T_SHORTSTR;
    if (len - 1 < n) return 0;
    out->type = LUA_TSTRING;
    out->str = (const char *)p + 1;
    out->len = n;
    return 1 + n;
  }
  switch (tag) {
  case T_NIL: out->type = LUA_TNIL; return 1;
  case T_FALSE:
  case T_TRUE:
    out->type = LUA_TBOOLEAN;
    out->boolean = tag == T_TRUE;
    return 1;
  case T_NULL: out->type = LUA_TLIGHTUSERDATA; return 1;
  case T_INT16:
  case T_INT32:
  case T_DOUBLE: {
    size_t n = tag == T_INT16 ? 2 : tag == T_INT32 ? 4 : 8;
    if (len < 1 + n) return 0;
    out->type = LUA_TNUMBER;
    if (n == 2) {
      int16_t i;
      memcpy(&i, p + 1, 2);
      out->num = i;
    } else if (n == 4) {
      int32_t i;
      memcpy(&i, p + 1, 4);
      out->num = i;
    } else {
      memcpy(&out->num, p + 1, 8);
    }
    return 1 + n;
  }
  case T_INT64:
  case T_UINT64:
    if (len < 9) return 0;
    out->type = LUA_TCDATA_;
    out->is_unsigned = tag == T_UINT64;
    memcpy(&out->bits, p + 1, 8);
    return 9;
  case T_STR: {
    uint64_t n = 0;
    size_t i = 1;
    for (int shift = 0;; shift += 7) {
      if (i >= len || shift >= 64) return 0;
      uint8_t b = p[i++];
      n |= (uint64_t)(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (n > len - i) return 0;
    out->type = LUA_TSTRING;
    out->str = (const char *)p + i;
    out->len = (size_t)n;
    return i + (size_t)n;
  }
  default: return 0;
  }
}

/* Push a new int64_t (uint64_t when is_unsigned) cdata of these bits;
 * 0, or -1 with nothing pushed (no FFI here). */
int px_scalar_push_int64(lua_State *L, int is_unsigned, int64_t bits);

/* Push the scalar at p[0 .. len) and return the bytes it took; 0 (nothing
 * pushed) if p does not start with a whole scalar.  Safe on any bytes. */
static inline size_t px_scalar_get(lua_State *L, const uint8_t *p, size_t len) {
  px_scalar v;
  size_t n = px_scalar_read(p, len, &v);
  switch (n ? v.type : -1) {
  case LUA_TNIL: lua_pushnil(L); break;
  case LUA_TBOOLEAN: lua_pushboolean(L, v.boolean); break;
  case LUA_TNUMBER: lua_pushnumber(L, v.num); break;
  case LUA_TSTRING: lua_pushlstring(L, v.str, v.len); break;
  case LUA_TLIGHTUSERDATA: lua_pushlightuserdata(L, NULL); break;
  case LUA_TCDATA_:
    if (px_scalar_push_int64(L, v.is_unsigned, v.bits) != 0) return 0;
    break;
  default: return 0;
  }
  return n;
}

#endif
