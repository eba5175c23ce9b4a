/*
 * marshal_preload.c -- package.preload travels with code (DESIGN.md,
 * "Crossing VMs": workers see the sender's package.preload).
 *
 * A bundled single-file application defines its modules as
 * package.preload["app.util"] = function(...) ... end on the main VM and
 * requires them there and in worker code.  Like the search paths
 * (paths.c), preload entries are published by a VM that sends code and
 * adopted by a VM that receives code:
 *
 * - publish (the sender, after px_marshal wrote code): the Lua functions
 *   of its package.preload that it has not published yet are marshalled
 *   (as any function crosses: bytecode, upvalues, the globals they read)
 *   into the runtime's list.  A __newindex on package.preload (when it
 *   has no metatable of its own) marks new entries, so a send with no new
 *   entry costs one registry read; with a metatable of its own the table
 *   is walked on each code send.
 * - sync (the receiver, before it reads code): entries published since it
 *   last looked are unmarshalled into its package.preload, unless it has
 *   an entry of that name of its own (a C module, its own definition).
 *   Nothing is required: `require` finds the entry when the code asks.
 *
 * C functions in package.preload are not published: every VM already
 * has parx's own and the host's (parx_register_module); a C loader of the
 * script's own cannot cross.  Entries stay until the runtime closes.
 *
 * parx.register_type(name, mt) makes mt a module of every VM: the VM that
 * registers it publishes a loader of a copy of mt as
 * package.preload["parx.type." .. name], marshalled before mt becomes
 * package.loaded["parx.type." .. name] there, so the copy is of its
 * contents, not a reference to itself.  A VM that receives such an
 * instance requires the name and gets its copy once; a VM that registered
 * the name itself uses its own.
 *
 * paths.c calls publish and sync through the runtime's hooks (set by
 * runtime.c): the marshaller calls paths.c, and this file calls the
 * marshaller.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct px_preload {
  px_preload *next;
  char *name;
  px_msg msg;
  long gen;
};

/* VM registry: {[W_DIRTY] = bool, [W_WATCHED] = bool, published = {name = fn}};
 * the flags by number: every code send reads them (lua_getfield interns its key). */
static const char watch_key = 0;
enum { W_DIRTY = 1, W_WATCHED = 2 };
static const char applied_key = 0;   /* VM registry: the last gen adopted */

static int preload_newindex(lua_State *L) {
  lua_rawset(L, 1);
  lua_pushboolean(L, 1);
  lua_rawseti(L, lua_upvalueindex(1), W_DIRTY);
  return 0;
}

/* Push package.preload, or return 0 (nothing pushed). */
static int push_preload(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "package");
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, "preload");
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TTABLE) return 1;
  }
  lua_pop(L, 1);
  return 0;
}

/* Push this VM's watch state, made (and the hook installed) on first use. */
static void push_watch(lua_State *L, int preload) {
  lua_pushlightuserdata(L, (void *)&watch_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 2, 1);
  lua_pushboolean(L, 1);
  lua_rawseti(L, -2, W_DIRTY);
  lua_newtable(L);
  lua_setfield(L, -2, "published");
  int watched = 0;
  if (!lua_getmetatable(L, preload)) {
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, preload_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, preload);
    watched = 1;
  } else {
    lua_pop(L, 1);
  }
  lua_pushboolean(L, watched);
  lua_rawseti(L, -2, W_WATCHED);
  lua_pushlightuserdata(L, (void *)&watch_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* Add name's marshalled loader to the runtime's list. */
static void add(px_runtime *rt, const char *name, px_msg *m) {
  px_preload *p = calloc(1, sizeof *p);
  char *copy = strdup(name);
  if (!p || !copy) {
    free(p);
    free(copy);
    px_msg_free(m);
    return;
  }
  p->name = copy;
  p->msg = *m;
  pthread_mutex_lock(&rt->lock);
  p->gen = ++rt->preloads_gen;
  p->next = rt->preloads;
  rt->preloads = p;
  pthread_mutex_unlock(&rt->lock);
  /* Receivers look again (px_paths_sync compares this generation). */
  atomic_fetch_add(&rt->paths_gen, 1);
}

void px_preload_publish(lua_State *L, px_vm *vm) {
  int top = lua_gettop(L);
  /* The common case first: watched, and no new entry since last time. */
  lua_pushlightuserdata(L, (void *)&watch_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_rawgeti(L, -1, W_DIRTY);
    lua_rawgeti(L, -2, W_WATCHED);
    int skip = !lua_toboolean(L, -2) && lua_toboolean(L, -1);
    lua_settop(L, top);
    if (skip) return;
  } else {
    lua_pop(L, 1);
  }
  if (!push_preload(L)) return;
  int preload = top + 1;
  push_watch(L, preload);
  int watch = top + 2;
  lua_pushboolean(L, 0);
  lua_rawseti(L, watch, W_DIRTY); /* before marshalling: it sends code too */
  lua_getfield(L, watch, "published");
  int published = top + 3;
  lua_pushnil(L);
  while (lua_next(L, preload)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1) && !lua_iscfunction(L, -1)) {
      lua_pushvalue(L, -2);
      lua_rawget(L, published);
      int known = lua_rawequal(L, -1, -2);
      lua_pop(L, 1);
      if (!known) {
        /* Marked first: marshalling sends code, which publishes again. */
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, published);
        px_msg m;
        px_msg_init(&m);
        if (px_marshal(L, lua_gettop(L), 1, &m) == 0) {
          add(vm->rt, lua_tostring(L, -2), &m);
        } else {
          lua_pop(L, 1); /* its message: a loader that cannot cross stays here */
          px_msg_free(&m);
        }
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
}

int px_preload_put(lua_State *L, px_vm *vm, const char *name, int fn) {
  int top = lua_gettop(L);
  if (fn < 0) fn = top + fn + 1;
  if (!push_preload(L)) return -1;
  int preload = top + 1;
  push_watch(L, preload);
  lua_getfield(L, -1, "published");
  lua_pushstring(L, name);
  lua_pushvalue(L, fn);
  lua_rawset(L, -3);
  px_msg m;
  px_msg_init(&m);
  if (px_marshal(L, fn, 1, &m) != 0) {
    px_msg_free(&m);
    lua_replace(L, top + 1); /* the message */
    lua_settop(L, top + 1);
    return -1;
  }
  add(vm->rt, name, &m);
  lua_pushstring(L, name);
  lua_pushvalue(L, fn);
  lua_rawset(L, preload);
  lua_settop(L, top);
  return 0;
}

void px_preload_sync(lua_State *L, px_vm *vm) {
  px_runtime *rt = vm->rt;
  int top = lua_gettop(L);
  lua_pushlightuserdata(L, (void *)&applied_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  long applied = (long)lua_tonumber(L, -1);
  lua_pop(L, 1);
  /* Copy what is new under the lock, unmarshal outside it (unmarshalling
   * may require modules, which may publish). */
  pthread_mutex_lock(&rt->lock);
  long gen = rt->preloads_gen;
  int n = 0;
  for (px_preload *p = rt->preloads; p && p->gen > applied; p = p->next) n++;
  px_preload **todo = n ? malloc(sizeof *todo * (size_t)n) : NULL;
  if (n && !todo) n = 0, gen = applied;
  int i = n;
  for (px_preload *p = rt->preloads; p && i > 0; p = p->next) todo[--i] = p; /* oldest first */
  pthread_mutex_unlock(&rt->lock);
  if (!push_preload(L)) {
    free(todo);
    return;
  }
  int preload = lua_gettop(L);
  push_watch(L, preload);
  lua_getfield(L, -1, "published");
  lua_replace(L, -2);
  int published = preload + 1;
  for (i = 0; i < n; i++) {
    px_preload *p = todo[i];
    lua_getfield(L, preload, p->name);
    int have = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (have) continue;
    px_msg copy = p->msg; /* entries live until close: the bytes are shared */
    copy.refs = NULL;
    copy.refcap = 0;
    if (p->msg.nrefs) {
      copy.refs = malloc(sizeof *copy.refs * (size_t)p->msg.nrefs);
      if (!copy.refs) continue;
      copy.refcap = p->msg.nrefs;
      for (int k = 0; k < p->msg.nrefs; k++) px_shared_retain(copy.refs[k] = p->msg.refs[k]);
    }
    int got = px_unmarshal(L, &copy);
    for (int k = 0; k < copy.nrefs; k++) px_shared_release(copy.refs[k]);
    free(copy.refs);
    if (got == 1 && lua_isfunction(L, -1)) {
      /* Raw, and marked published: this VM does not send it back. */
      lua_pushstring(L, p->name);
      lua_pushvalue(L, -2);
      lua_rawset(L, preload);
      lua_pushstring(L, p->name);
      lua_insert(L, -2);
      lua_rawset(L, published);
    }
    lua_settop(L, published);
  }
  free(todo);
  lua_settop(L, top);
  lua_pushlightuserdata(L, (void *)&applied_key);
  lua_pushnumber(L, (double)gen);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

void px_preload_free(px_runtime *rt) {
  px_preload *p = rt->preloads;
  while (p) {
    px_preload *next = p->next;
    px_msg_free(&p->msg);
    free(p->name);
    free(p);
    p = next;
  }
  rt->preloads = NULL;
}

/* ---- parx.register_type(name, mt) --------------------------------------- */

#define TYPE_PREFIX "parx.type."

static const char loader_src[] = "local mt = ... return function() return mt end";

int px_marshal_register_type(lua_State *L) {
  size_t len;
  luaL_checktype(L, 1, LUA_TSTRING);
  const char *name = lua_tolstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!len || memchr(name, 0, len)) return luaL_argerror(L, 1, "a type name is a non-empty string");
  px_vm *vm = px_vm_of(L);
  if (!vm) return luaL_error(L, "parx.register_type: not in a parx VM");
  lua_settop(L, 2);
  lua_pushfstring(L, TYPE_PREFIX "%s", name);
  const char *key = lua_tostring(L, 3);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, key);
  if (lua_rawequal(L, -1, 2)) return 0; /* registered already, here */
  lua_pop(L, 1);
  /* The loader of a copy, published before mt is a module here. */
  if (luaL_loadbuffer(L, loader_src, sizeof loader_src - 1, "=parx.register_type") != 0)
    return lua_error(L);
  lua_pushvalue(L, 2);
  lua_call(L, 1, 1);
  if (px_preload_put(L, vm, key, -1) != 0) {
    return luaL_error(L, "parx.register_type: %s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                                      : "package.preload is not a table");
  }
  lua_pushvalue(L, 2);
  lua_setfield(L, 4, key);
  return 0;
}
