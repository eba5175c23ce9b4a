/* iohandle.c -- see iohandle.h. */
#include "iohandle.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void px_iohandle_init(px_iohandle *h, const px_iohandle_type *type) {
  h->type = type;
  h->closing = h->closed = h->lua_owned = h->lua_gone = 0;
}

static void maybe_free(px_iohandle *h) {
  if (!h->closed || (h->lua_owned && !h->lua_gone)) return;
  if (h->type->free)
    h->type->free(h);
  else
    free(h);
}

void px_iohandle_close(px_iohandle *h) {
  if (h->closing) return;
  h->closing = 1;
  h->type->close(h);
}

void px_iohandle_closed(px_iohandle *h) {
  assert(h->closing && !h->closed);
  h->closed = 1;
  maybe_free(h);
}

static px_iohandle **check_box(lua_State *L) {
  px_iohandle **box = lua_touserdata(L, 1);
  if (!box || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1))) {
    lua_getfield(L, lua_upvalueindex(1), "__name");
    luaL_typerror(L, 1, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  return box;
}

px_iohandle *px_iohandle_get(lua_State *L) { return *check_box(L); }

/* "attempt to use a closed server": the last part of the type's name. */
static void raise_closed(lua_State *L, const char *name) {
  const char *dot = strrchr(name, '.');
  luaL_error(L, "attempt to use a closed %s", dot ? dot + 1 : name);
}

px_iohandle *px_iohandle_check(lua_State *L) {
  px_iohandle **box = check_box(L);
  px_iohandle *h = *box;
  if (!px_iohandle_is_open(h)) {
    lua_getfield(L, lua_upvalueindex(1), "__name");
    raise_closed(L, lua_tostring(L, -1));
  }
  return h;
}

px_iohandle *px_iohandle_check_type(lua_State *L, int idx, const px_iohandle_type *type) {
  px_iohandle **box = luaL_checkudata(L, idx, type->name);
  if (!px_iohandle_is_open(*box)) raise_closed(L, type->name);
  return *box;
}

/* __gc: a collected open handle is closed; one already closed is freed. */
static int handle_gc(lua_State *L) {
  px_iohandle **box = lua_touserdata(L, 1);
  px_iohandle *h = *box;
  if (!h) return 0;
  *box = NULL;
  h->lua_gone = 1;
  if (!h->closing)
    px_iohandle_close(h);
  else
    maybe_free(h);
  return 0;
}

static int handle_tostring(lua_State *L) {
  px_iohandle *h = px_iohandle_get(L);
  lua_getfield(L, lua_upvalueindex(1), "__name");
  if (!px_iohandle_is_open(h)) {
    lua_pushliteral(L, " (closed)");
  } else if (h->type->describe) {
    lua_pushliteral(L, " (");
    h->type->describe(L, h);
    lua_pushliteral(L, ")");
    lua_concat(L, 3);
  } else {
    lua_pushfstring(L, " (%p)", (void *)h);
  }
  lua_concat(L, 2);
  return 1;
}

/* __index of types with fields: the methods (upvalue 2), then type->field. */
static int handle_index(lua_State *L) {
  px_iohandle *h = px_iohandle_get(L);
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  if (!lua_isnil(L, -1)) return 1;
  const char *key = lua_tostring(L, 2);
  if (!key) return 1;
  lua_pop(L, 1);
  const px_iohandle_type *type = lua_touserdata(L, lua_upvalueindex(3));
  type->field(L, h, key);
  return 1;
}

void px_iohandle_meta(lua_State *L, const px_iohandle_type *type) {
  if (!luaL_newmetatable(L, type->name)) return;
  int mt = lua_gettop(L);
  lua_pushstring(L, type->name);
  lua_setfield(L, mt, "__name");
  /* Scripts see the name, never the table: no script can take __gc away
   * or call it by hand (as with px_shared's metatables). */
  lua_pushstring(L, type->name);
  lua_setfield(L, mt, "__metatable");
  lua_pushcfunction(L, handle_gc);
  lua_setfield(L, mt, "__gc");
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, handle_tostring, 1);
  lua_setfield(L, mt, "__tostring");
  lua_newtable(L); /* the methods, each with the metatable as upvalue 1 */
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, type->methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, mt, "methods");
  if (type->field) {
    /* A plain table __index is what LuaJIT's JIT follows fastest: a C
     * function only for types that have fields beyond their methods. */
    lua_pushvalue(L, mt);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, (void *)type);
    lua_pushcclosure(L, handle_index, 3);
  }
  lua_setfield(L, mt, "__index");
}

void px_iohandle_push(lua_State *L, px_iohandle *h) {
  assert(!h->lua_owned);
  px_iohandle **box = lua_newuserdata(L, sizeof *box);
  *box = h;
  h->lua_owned = 1;
  px_iohandle_meta(L, h->type);
  lua_setmetatable(L, -2);
}

int px_iohandle_wait(lua_State *L, px_req *req, const px_req_type *type, const char *what,
                     uv_handle_t *ref) {
  px_req_init(req, type, what);
  px_req_start(L, req); /* raises before anything is registered */
  px_req_anchor(L, req, 1);
  if (ref) uv_ref(ref);
  return px_req_park(L, req);
}

int px_iohandle_close_method(lua_State *L) {
  px_iohandle *h = px_iohandle_get(L);
  if (h) px_iohandle_close(h);
  lua_pushboolean(L, 1);
  return 1;
}

int px_iohandle_closed_method(lua_State *L) {
  lua_pushboolean(L, !px_iohandle_is_open(px_iohandle_get(L)));
  return 1;
}
