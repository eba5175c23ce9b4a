/*
 * slot.c -- one value in flight through a channel (px_slot, slot.h), from
 * a task (px_slot_encode, px_slot_decode) or a host thread
 * (px_slot_from_host, px_slot_to_host).
 *
 * The fast path: scalars are written into the slot itself by the one
 * scalar encoder (core/scalar.h, the marshaller's own encoding), so the
 * common message allocates nothing; a longer string is one malloc'd copy;
 * anything else goes through the marshaller (tables, functions, shared
 * objects such as channels).
 */
#include <stdlib.h>
#include <string.h>

#include "../core/scalar.h"
#include "../parx.h"
#include "slot.h"

/* A malloc'd copy of the string str (len bytes) into s; -1 when out of
 * memory. */
static int put_bytes(px_slot *s, const char *str, size_t len) {
  px_bytes *b = malloc(sizeof *b + len);
  if (!b) return -1;
  b->len = len;
  memcpy(b->data, str, len);
  s->tag = SLOT_BYTES;
  s->u.bytes = b;
  return 0;
}

int px_slot_encode(lua_State *L, int idx, px_slot *s) {
  size_t n = px_scalar_put(L, idx, (uint8_t *)s->str, SLOT_INLINE);
  if (n) {
    s->tag = SLOT_SCALAR;
    s->len = (uint8_t)n;
    return 0;
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *str = lua_tolstring(L, idx, &len);
    if (put_bytes(s, str, len) == 0) return 0;
    lua_pushliteral(L, "not enough memory");
    return -1;
  }
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  px_msg *m = malloc(sizeof *m);
  if (!m) {
    lua_pushliteral(L, "not enough memory");
    return -1;
  }
  px_msg_init(m);
  if (px_marshal(L, idx, 1, m) != 0) {
    px_msg_free(m);
    free(m);
    return -1;
  }
  s->tag = SLOT_MSG;
  s->u.msg = m;
  return 0;
}

int px_slot_decode(lua_State *L, px_slot *s) {
  int tag = s->tag;
  s->tag = SLOT_NIL;
  switch (tag) {
  case SLOT_NIL: lua_pushnil(L); return 0;
  case SLOT_SCALAR:
    if (!px_scalar_get(L, (const uint8_t *)s->str, s->len)) lua_pushnil(L); /* cannot happen */
    return 0;
  case SLOT_BYTES:
    lua_pushlstring(L, s->u.bytes->data, s->u.bytes->len);
    free(s->u.bytes);
    return 0;
  default: {
    px_msg *m = s->u.msg;
    int n = px_unmarshal(L, m);
    px_msg_free(m);
    free(m);
    if (n < 0) return -1;
    if (n == 0) lua_pushnil(L);
    else if (n > 1) lua_pop(L, n - 1);
    return 0;
  }
  }
}

void px_slot_free(px_slot *s) {
  if (s->tag == SLOT_BYTES) {
    free(s->u.bytes);
  } else if (s->tag == SLOT_MSG) {
    px_msg_free(s->u.msg); /* releases the shared references it holds */
    free(s->u.msg);
  }
  s->tag = SLOT_NIL;
}

int px_slot_from_host(const parx_value *v, px_slot *s) {
  memset(s, 0, sizeof *s);
  uint8_t *p = (uint8_t *)s->str;
  s->tag = SLOT_SCALAR;
  switch (v->type) {
  case PARX_VALUE_BOOLEAN:
    p[0] = v->boolean ? T_TRUE : T_FALSE;
    s->len = 1;
    return 0;
  case PARX_VALUE_NUMBER:
    s->len = (uint8_t)px_scalar_put_number(p, v->number);
    return 0;
  case PARX_VALUE_STRING:
    if (v->len < SLOT_INLINE) { /* a tag byte and the bytes */
      s->len = (uint8_t)px_scalar_put_string(p, v->string, v->len);
      return 0;
    }
    return put_bytes(s, v->string, v->len);
  default:
    s->tag = SLOT_NIL;
    return 0;
  }
}

/* out = a NUL-terminated malloc'd copy of str. */
static int host_string(parx_value *out, const char *str, size_t len) {
  out->string = malloc(len + 1);
  if (!out->string) return PARX_CHAN_ERRMEM;
  memcpy(out->string, str, len);
  out->string[len] = 0;
  out->len = len;
  out->type = PARX_VALUE_STRING;
  return PARX_CHAN_OK;
}

int px_slot_to_host(px_slot *s, parx_value *out) {
  memset(out, 0, sizeof *out);
  int rc = PARX_CHAN_OK;
  out->type = PARX_VALUE_OTHER;
  if (s->tag == SLOT_NIL) {
    out->type = PARX_VALUE_NIL;
  } else if (s->tag == SLOT_BYTES) {
    rc = host_string(out, s->u.bytes->data, s->u.bytes->len);
  } else if (s->tag == SLOT_SCALAR) {
    px_scalar v;
    px_scalar_read((const uint8_t *)s->str, s->len, &v);
    if (v.type == LUA_TNIL) {
      out->type = PARX_VALUE_NIL;
    } else if (v.type == LUA_TBOOLEAN) {
      out->type = PARX_VALUE_BOOLEAN;
      out->boolean = v.boolean;
    } else if (v.type == LUA_TNUMBER) {
      out->type = PARX_VALUE_NUMBER;
      out->number = v.num;
    } else if (v.type == LUA_TSTRING) {
      rc = host_string(out, v.str, v.len);
    }
  }
  px_slot_free(s);
  return rc;
}
