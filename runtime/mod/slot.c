/*
 * slot.c -- one value in flight through a channel (px_slot, chan.h).
 *
 * The fast path: nil, booleans, numbers and strings up to SLOT_INLINE bytes
 * are copied into the slot itself, so the common message allocates nothing;
 * a longer string is one malloc'd copy; anything else goes through the
 * marshaller (tables, functions, shared objects such as channels).
 */
#include <stdlib.h>
#include <string.h>

#include "chan.h"

int px_slot_encode(lua_State *L, int idx, px_slot *s) {
  switch (lua_type(L, idx)) {
  case LUA_TNONE:
  case LUA_TNIL:
    s->tag = SLOT_NIL;
    return 0;
  case LUA_TBOOLEAN:
    s->tag = lua_toboolean(L, idx) ? SLOT_TRUE : SLOT_FALSE;
    return 0;
  case LUA_TNUMBER:
    s->tag = SLOT_NUM;
    s->u.num = lua_tonumber(L, idx);
    return 0;
  case LUA_TSTRING: {
    size_t len;
    const char *str = lua_tolstring(L, idx, &len);
    if (len <= SLOT_INLINE) {
      s->tag = SLOT_STR;
      s->len = (uint8_t)len;
      memcpy(s->str, str, len);
      return 0;
    }
    px_bytes *b = malloc(sizeof *b + len);
    if (!b) {
      lua_pushliteral(L, "not enough memory");
      return -1;
    }
    b->len = len;
    memcpy(b->data, str, len);
    s->tag = SLOT_BYTES;
    s->u.bytes = b;
    return 0;
  }
  default: {
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
  }
}

int px_slot_decode(lua_State *L, px_slot *s) {
  int tag = s->tag;
  s->tag = SLOT_NIL;
  switch (tag) {
  case SLOT_NIL: lua_pushnil(L); return 0;
  case SLOT_FALSE: lua_pushboolean(L, 0); return 0;
  case SLOT_TRUE: lua_pushboolean(L, 1); return 0;
  case SLOT_NUM: lua_pushnumber(L, s->u.num); return 0;
  case SLOT_STR: lua_pushlstring(L, s->str, s->len); return 0;
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
