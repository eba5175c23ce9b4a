/*
 * marshal_globals.c -- the globals a Lua function takes along: the writer
 * finds the names a function reads (GGET, nested functions included) and
 * whether it assigns globals (GSET) once per function and VM, caches them
 * with its bytecode, and sends the values each time (see "Globals" at the
 * top of marshal.c; marshal_lj.c reads the bytecode).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

static int gettable_cf(lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

/* Push env[name]: rawget, then along a chain of __index tables (sandboxed
 * environments such as setmetatable(env, {__index = _G})).  An __index
 * function (busted's environments, strict mode) is called in a protected
 * call; an error there counts as nil. */
void px_marshal_get_global(lua_State *L, int env, int nameidx) {
  lua_pushvalue(L, env);
  for (int hops = 0;; hops++) {
    lua_pushvalue(L, nameidx);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1) || hops == 16 || !lua_getmetatable(L, -2)) break;
    lua_getfield(L, -1, "__index");
    if (lua_type(L, -1) != LUA_TTABLE) {
      int call = lua_isfunction(L, -1);
      lua_pop(L, 3);
      if (call) {
        lua_pushcfunction(L, gettable_cf);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, nameidx);
        if (lua_pcall(L, 2, 1, 0) != 0) {
          lua_pop(L, 1);
          lua_pushnil(L);
        }
      } else {
        lua_pushnil(L);
      }
      break;
    }
    lua_replace(L, -4); /* the __index table replaces the table searched */
    lua_pop(L, 2);
  }
  lua_remove(L, -2);
}

typedef struct names_ctx { writer *w; int env, set, list, n; } names_ctx;

/* Is the value on top a standard library's: a C function or a module? */
int px_marshal_is_std_value(writer *w) {
  lua_State *L = w->L;
  if (lua_iscfunction(L, -1)) return 1;
  int t = lua_type(L, -1);
  if ((t == LUA_TTABLE || t == LUA_TFUNCTION) && px_marshal_module_name(w, lua_gettop(L))) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

static void add_global(const char *s, size_t len, void *ud) {
  names_ctx *c = ud;
  lua_State *L = c->w->L;
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -1);
  lua_rawget(L, c->set);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, c->set);
  if (px_marshal_is_std_global(lua_tostring(L, -1))) {
    /* A standard name is left out if it holds its standard value now (a
     * script that replaces print later keeps the worker's own), else it is
     * flagged with a leading '\1' and checked again at send time. */
    px_marshal_get_global(L, c->env, lua_gettop(L));
    int std = px_marshal_is_std_value(c->w);
    lua_pop(L, 1);
    if (std) {
      lua_pop(L, 1);
      return;
    }
    lua_pushfstring(L, "\1%s", lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  lua_rawseti(L, c->list, 2 + c->n++);
}

static void found_gset(const char *s, size_t len, void *ud) { *(int *)ud = 1; }

/* Push the cache entry {bytecode, global names...} of the Lua function at
 * idx, making it on first use. */
void px_marshal_function_entry(writer *w, int idx) {
  lua_State *L = w->L;
  lua_rawgeti(L, w->state, S_FCACHE);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_newtable(L);
  int entry = lua_gettop(L);
  lua_pushvalue(L, idx);
  px_marshal_dump_function(L);
  lua_rawseti(L, entry, 1);
  lua_pop(L, 1);
  if (px_marshal_gget_op >= 0) {
    lua_rawgeti(L, entry, 1);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    lua_getfenv(L, idx);
    lua_newtable(L);
    names_ctx c = {w, lua_gettop(L) - 1, lua_gettop(L), entry, 0};
    if (lua_type(L, c.env) == LUA_TTABLE)
      px_marshal_scan_dump(bc, len, px_marshal_gget_op, NULL, add_global, &c);
    lua_pop(L, 3);
  }
  /* entry[0] = true: the function (or one nested in it) assigns globals,
   * so the receiver gives it an environment of its own. */
  int assigns = 1;
  if (px_marshal_gset_op >= 0) {
    lua_rawgeti(L, entry, 1);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    assigns = 0;
    if (px_marshal_scan_dump(bc, len, px_marshal_gset_op, NULL, found_gset, &assigns) != 0) assigns = 1;
    lua_pop(L, 1);
  }
  if (assigns) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, entry, 0);
  }
  lua_pushvalue(L, idx);
  lua_pushvalue(L, entry);
  lua_rawset(L, entry - 1);
  lua_remove(L, entry - 1);
}
