/*
 * marshal_state.c -- what the marshaller keeps per VM: a registry table
 * (px_marshal_state) with its caches, and the maps of loaded modules and
 * of C functions by name, which let the writer send a module or a library
 * function as its name (see "Choices" at the top of marshal.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

const char px_cdata_hook_key = 0;

/* ------------------------------------------------------------------------
 * Per-VM state: a registry table with the caches below.
 * ---------------------------------------------------------------------- */

static const char state_key = 0;


static const char *const std_globals[] = {
  "assert", "collectgarbage", "dofile", "error", "gcinfo", "getfenv",
  "getmetatable", "ipairs", "load", "loadfile", "loadstring", "module",
  "newproxy", "next", "pairs", "pcall", "print", "rawequal", "rawget",
  "rawlen", "rawset", "require", "select", "setfenv", "setmetatable",
  "tonumber", "tostring", "type", "unpack", "xpcall", "_G", "_VERSION",
  "bit", "coroutine", "debug", "ffi", "io", "jit", "math", "os", "package",
  "string", "table", "parx", NULL};

int px_marshal_is_std_global(const char *name) {
  for (const char *const *p = std_globals; *p; p++)
    if (!strcmp(*p, name)) return 1;
  return 0;
}

/* Rebuild S_CFUNCS: every C function that is a field of a loaded module
 * (standard libraries included).  Done once per VM and again when a C
 * function is not found (a module loaded since). */
/* Push package.loaded and return its index if it is a table; else 0
 * (nothing left pushed). */
static int push_loaded(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_type(L, -1) == LUA_TTABLE) return lua_gettop(L);
  lua_pop(L, 1);
  return 0;
}

static void build_cfuncs(lua_State *L, int state) {
  lua_newtable(L);
  int map = lua_gettop(L);
  int loaded = push_loaded(L);
  if (loaded) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
        const char *mod = lua_tostring(L, -2);
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
          if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
            const char *field = lua_tostring(L, -2);
            lua_pushvalue(L, -1);
            lua_rawget(L, map);
            /* Prefer the standard library's name for functions that
             * several modules re-export. */
            int have = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!have && !strchr(field, '.')) {
              lua_pushvalue(L, -1);
              lua_pushfstring(L, "%s.%s", mod, field);
              lua_rawset(L, map);
            }
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_rawseti(L, state, S_CFUNCS);
}

/* __newindex of package.loaded (upvalue 1: the state): a new module makes
 * the sender refresh its map of modules.  require() first stores a sentinel
 * under a new name (which lands here) and overwrites it when the module has
 * loaded; refresh_modules keeps S_DIRTY set while a sentinel is present. */
static int loaded_newindex(lua_State *L) {
  lua_settop(L, 3);
  lua_rawset(L, 1);
  lua_pushboolean(L, 1);
  lua_rawseti(L, lua_upvalueindex(1), S_DIRTY);
  return 0;
}

/* Push the marshal state of L's VM, creating it on first use. */
int px_marshal_state(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&state_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) == LUA_TTABLE) return lua_gettop(L);
  lua_pop(L, 1);
  px_marshal_probe(L);
  px_shape_probe(L);
  lua_createtable(L, S_NSLOTS, 0);
  int state = lua_gettop(L);
  lua_newtable(L);
  lua_rawseti(L, state, S_MODULES);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawseti(L, state, S_FCACHE);
  lua_newtable(L);
  lua_rawseti(L, state, S_BYNAME);
  lua_newtable(L);
  lua_rawseti(L, state, S_PROTOS);
  lua_pushnumber(L, 0);
  lua_rawseti(L, state, S_NPROTOS);
  build_cfuncs(L, state);
  lua_pushboolean(L, 1);
  lua_rawseti(L, state, S_DIRTY);
  /* Watch package.loaded for new modules, unless someone else already gave
   * it a metatable (then the map is refreshed on every send that needs it). */
  int tracked = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_type(L, -1) == LUA_TTABLE && !lua_getmetatable(L, -1)) {
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, state);
    lua_pushcclosure(L, loaded_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    tracked = 1;
  }
  lua_settop(L, state);
  lua_pushboolean(L, tracked);
  lua_rawseti(L, state, S_TRACKED);
  lua_pushlightuserdata(L, (void *)&state_key);
  lua_pushvalue(L, state);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return state;
}

/* ------------------------------------------------------------------------
 * Messages.
 * ---------------------------------------------------------------------- */

void px_msg_init(px_msg *m) { memset(m, 0, sizeof *m); }

void px_msg_free(px_msg *m) {
  for (int i = 0; i < m->nrefs; i++) px_shared_release(m->refs[i]);
  free(m->refs);
  free(m->data);
  memset(m, 0, sizeof *m);
}

/* ---- modules and C functions by name --------------------------------- */

/* The addresses of the values in S_MODULES, open addressing. */
typedef struct modset { size_t cap; const void *p[]; } modset;

static int modset_has(const modset *set, const void *p) {
  if (!set || !set->cap) return 0;
  size_t mask = set->cap - 1, i = ptr_hash(p) >> 32 & mask;
  for (;; i = (i + 1) & mask) {
    if (set->p[i] == p) return 1;
    if (!set->p[i]) return 0;
  }
}

static modset *build_modset(lua_State *L, int state) {
  lua_rawgeti(L, state, S_MODULES);
  size_t n = 0, cap = 8;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    n++;
    lua_pop(L, 1);
  }
  while (cap < 2 * n + 2) cap *= 2;
  modset *set = lua_newuserdata(L, sizeof *set + cap * sizeof set->p[0]);
  set->cap = cap;
  memset(set->p, 0, cap * sizeof set->p[0]);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pop(L, 1);
    const void *p = lua_topointer(L, -1);
    size_t i = ptr_hash(p) >> 32 & (cap - 1);
    while (set->p[i]) i = (i + 1) & (cap - 1);
    set->p[i] = p;
  }
  lua_rawseti(L, state, S_MODPTRS);
  lua_pop(L, 1);
  return set;
}

static void refresh_modules(writer *w) {
  lua_State *L = w->L;
  int loading = 0;
  w->modules_fresh = 1; /* at most once per px_marshal */
  lua_rawgeti(L, w->state, S_TRACKED);
  lua_rawgeti(L, w->state, S_DIRTY);
  int skip = lua_toboolean(L, -2) && !lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (skip) return;
  lua_rawgeti(L, w->state, S_MODULES);
  int map = lua_gettop(L);
  int loaded = push_loaded(L);
  if (loaded) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      int t = lua_type(L, -1);
      if (t == LUA_TLIGHTUSERDATA) loading = 1;
      if (lua_type(L, -2) == LUA_TSTRING &&
          (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TUSERDATA)) {
        lua_pushvalue(L, -1);
        lua_rawget(L, map);
        /* A module under several names: the most public one (marshal_names.c). */
        int have = lua_type(L, -1) == LUA_TSTRING && !px_marshal_better_name(L, -3, -1);
        lua_pop(L, 1);
        if (!have) {
          lua_pushvalue(L, -1);
          lua_pushvalue(L, -3);
          lua_rawset(L, map);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, map - 1);
  lua_pushboolean(L, loading);
  lua_rawseti(L, w->state, S_DIRTY);
  build_modset(L, w->state);
}

static void fresh_modptrs(writer *w) {
  lua_State *L = w->L;
  refresh_modules(w);
  lua_rawgeti(L, w->state, S_MODPTRS);
  w->modptrs = lua_touserdata(L, -1);
  lua_pop(L, 1);
}

int px_marshal_maybe_module(writer *w, const void *p) {
  if (!w->modules_fresh) fresh_modptrs(w);
  return modset_has(w->modptrs, p);
}

/* If the value at idx is a module (a value of package.loaded), push its
 * name and return 1.  Most values are not: a C set of the modules' addresses
 * (S_MODPTRS) answers that without touching Lua tables. */
int px_marshal_module_name(writer *w, int idx) {
  lua_State *L = w->L;
  if (!w->modules_fresh) fresh_modptrs(w);
  const void *p = lua_topointer(L, idx);
  if (!modset_has(w->modptrs, p)) return 0;
  lua_rawgeti(L, w->state, S_MODULES);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING) {
    /* Still loaded under that name?  (modules can be unloaded) */
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    int same = lua_rawequal(L, -1, idx);
    lua_pop(L, 2);
    if (same) {
      lua_remove(L, -2);
      return 1;
    }
  }
  /* Stale: forget it. */
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  w->modptrs = build_modset(L, w->state);
  return 0;
}

int px_marshal_cfunc_name(writer *w, int idx) {
  lua_State *L = w->L;
  for (;;) {
    lua_rawgeti(L, w->state, S_CFUNCS);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING) return 1;
    lua_pop(L, 1);
    if (w->cfuncs_fresh) return 0;
    build_cfuncs(L, w->state);
    w->cfuncs_fresh = 1;
  }
}
