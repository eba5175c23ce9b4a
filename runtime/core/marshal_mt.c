/*
 * marshal_mt.c -- metatables crossing VMs by name.
 *
 * A table's metatable crosses by name, and the receiver uses its own
 * (DESIGN.md, "Crossing VMs"), in this order:
 * - a loaded module (a class library's class table used as a metatable,
 *   or a type registered with parx.register_type(name, mt), which is
 *   package.loaded["parx.type." .. name] on the VM that registered it):
 *   its module name, as before;
 * - a table reachable from a loaded module through string keys, at most
 *   MT_DEPTH steps (middleclass's Class.__instanceDict in a module's
 *   table): "\2module\0key\0key"; the receiver requires the module and
 *   follows the keys (raw reads);
 * - anything else: the send fails, naming the value ("a table whose
 *   metatable is not a loaded module's, reachable from one or registered
 *   with parx.register_type"), instead of dropping the metatable.
 * A metatable protected by __metatable (getmetatable returns something
 * else) is the real one here: the marshaller reads it raw.
 *
 * parx.register_type (marshal_preload.c) makes a type a module of every
 * VM, so its metatable crosses as the first case.
 */
#include <stdio.h>
#include <string.h>

#include "marshal.h"

#define MT_DEPTH 3        /* keys followed from a module to a metatable */
#define MT_VISIT 4096     /* tables looked at in one search, at most */

/* ---- metatables reachable from a module: the path ------------------- */

static const char path_cache_key = 0; /* VM registry: mt -> path (weak keys) */

/* Libraries whose tables are not searched: no class lives there, and _G
 * would make every global a path. */
static int searched(const char *name) {
  static const char *const skip[] = {"_G", "string", "table", "math", "io", "os", "coroutine",
                                     "debug", "package", "bit", "jit", "ffi", NULL};
  for (int i = 0; skip[i]; i++)
    if (strcmp(name, skip[i]) == 0) return 0;
  return strncmp(name, "jit.", 4) != 0;
}

/* Depth-first from the table at t (at depth d, at most max), looking for
 * mt; on a hit the keys are pushed (d of them) and 1 returned. */
static int find(lua_State *L, int t, int mt, int d, int max, int seen, int *budget) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
      size_t len;
      const char *k = lua_tolstring(L, -2, &len);
      if (!memchr(k, 0, len)) {
        if (lua_rawequal(L, -1, mt)) {
          lua_pop(L, 1); /* the key stays */
          return 1;
        }
        lua_pushvalue(L, -1);
        lua_rawget(L, seen);
        int was = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!was && d < max && --*budget > 0) {
          lua_pushvalue(L, -1);
          lua_pushboolean(L, 1);
          lua_rawset(L, seen);
          int top = lua_gettop(L);
          if (find(L, top, mt, d + 1, max, seen, budget)) {
            lua_remove(L, top); /* the table; its key stays below the rest */
            return 1;
          }
        }
      }
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* Push "\2module\0key..." for the metatable at mt, or return 0.  The
 * shortest path wins (parx.scope's ErrorGroup is "parx.scope" then
 * "ErrorGroup", not "parx", "scope", "ErrorGroup"), then the better module
 * name, so the choice does not depend on the order of package.loaded. */
static int search_path(lua_State *L, int mt) {
  int top = lua_gettop(L), budget = MT_VISIT;
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_type(L, -1) != LUA_TTABLE) return lua_settop(L, top), 0;
  int loaded = top + 1;
  lua_pushnil(L); /* top + 2: the best path so far */
  for (int max = 1; max <= MT_DEPTH && lua_isnil(L, top + 2) && budget > 0; max++) {
    lua_pushnil(L); /* top + 3: the best path's module name */
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE && searched(lua_tostring(L, -2)) &&
          (lua_isnil(L, top + 3) || px_marshal_better_name(L, -2, top + 3))) {
        int mod = lua_gettop(L);
        lua_newtable(L); /* seen, per module: a shorter path may pass where another went */
        if (find(L, mod, mt, 1, max, mod + 1, &budget)) {
          int last = lua_gettop(L); /* the keys: mod + 2 .. last */
          luaL_Buffer b;
          luaL_buffinit(L, &b);
          luaL_addchar(&b, '\2');
          size_t len;
          const char *s = lua_tolstring(L, mod - 1, &len);
          luaL_addlstring(&b, s, len);
          for (int i = mod + 2; i <= last; i++) {
            s = lua_tolstring(L, i, &len);
            luaL_addchar(&b, '\0');
            luaL_addlstring(&b, s, len);
          }
          luaL_pushresult(&b);
          lua_replace(L, top + 2);
          lua_pushvalue(L, mod - 1);
          lua_replace(L, top + 3);
        }
        lua_settop(L, mod);
      }
      lua_pop(L, 1);
      if (budget <= 0) {
        lua_pop(L, 1);
        break;
      }
    }
    lua_settop(L, top + 2);
  }
  if (lua_isnil(L, top + 2)) return lua_settop(L, top), 0;
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 1;
}

/* Follow path p (len bytes, after the '\2') from the module on top; the
 * module is replaced by what the keys reach (nil when a key is missing). */
static void walk(lua_State *L, const char *p, size_t len) {
  const char *end = p + len, *k = memchr(p, 0, len);
  while (k && k < end) {
    const char *next = memchr(k + 1, 0, (size_t)(end - k - 1));
    const char *stop = next ? next : end;
    if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_pushnil(L);
      return;
    }
    lua_pushlstring(L, k + 1, (size_t)(stop - k - 1));
    lua_rawget(L, -2);
    lua_remove(L, -2);
    k = next;
  }
}

/* Does the cached path at the top still lead to mt here? */
static int path_holds(lua_State *L, int mt) {
  size_t len;
  const char *p = lua_tolstring(L, -1, &len);
  const char *nul = memchr(p, 0, len);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_pushlstring(L, p + 1, nul ? (size_t)(nul - p - 1) : len - 1);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  walk(L, p + 1, len - 1);
  int same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return same;
}

int px_marshal_mt_name(writer *w, int mt) {
  lua_State *L = w->L;
  w->code = 1; /* a module is named: the receiver syncs paths and preloads */
  if (px_marshal_module_name(w, mt)) return 1;
  lua_pushlightuserdata(L, (void *)&path_cache_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushlightuserdata(L, (void *)&path_cache_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  int cache = lua_gettop(L);
  lua_pushvalue(L, mt);
  lua_rawget(L, cache);
  if (lua_type(L, -1) == LUA_TSTRING && path_holds(L, mt)) {
    lua_remove(L, cache);
    return 1;
  }
  lua_pop(L, 1);
  if (search_path(L, mt)) {
    lua_pushvalue(L, mt);
    lua_pushvalue(L, -2);
    lua_rawset(L, cache);
    lua_remove(L, cache);
    return 1;
  }
  lua_pop(L, 1);
  return px_marshal_unsendable(w, mt, "a table whose metatable is not a loaded module's, "
                                       "reachable from one or registered with parx.register_type");
}

/* ---- the receiver ------------------------------------------------------ */

int px_marshal_mt_split(lua_State *L) {
  size_t len;
  const char *p = lua_tolstring(L, -1, &len);
  if (!p || !len || p[0] != '\2') {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 0;
  }
  const char *nul = memchr(p, 0, len);
  lua_pushlstring(L, p + 1, nul ? (size_t)(nul - p - 1) : len - 1);
  return 0; /* the path, then the module's name */
}

int px_marshal_mt_walk(lua_State *L, char *err, size_t errlen) {
  if (lua_isnil(L, -2)) {
    lua_remove(L, -2);
    return 0;
  }
  size_t len;
  const char *p = lua_tolstring(L, -2, &len);
  walk(L, p + 1, len - 1);
  if (lua_type(L, -1) != LUA_TTABLE) {
    /* Not there on this side: say which. */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 1; i < len; i++) luaL_addchar(&b, p[i] ? p[i] : '.');
    luaL_pushresult(&b);
    snprintf(err, errlen, "cannot find metatable '%s' here", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  lua_remove(L, -2);
  return 0;
}
