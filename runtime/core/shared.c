/* shared.c -- reference-counted objects that cross VMs by reference.
 *
 * Each Lua proxy (a full userdata holding the pointer) owns one reference;
 * its __gc drops it.  The object's type frees it when the last reference
 * goes, on whichever thread that happens.
 *
 * A proxy is recognised by its metatable's identity: each VM keeps the set
 * of metatables px_shared_meta made (a registry table), never a field a
 * script could set on its own metatable.  Those metatables carry
 * `__metatable = type name`, so getmetatable(obj) gives "parx.channel" and
 * plain Lua can neither read nor replace the real one.  (The debug and ffi
 * libraries can forge anything; they are outside this guarantee.)
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "px.h"

#define MAX_TYPES 64

static px_shared_type *types[MAX_TYPES];
static _Atomic int ntypes; /* types[1..ntypes] are set before ntypes grows */
static int (*_Atomic holds[MAX_TYPES])(const void *p); /* by type id */
static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;

void px_shared_register(px_shared_type *type) {
  pthread_mutex_lock(&types_lock);
  if (type->id == 0) {
    /* ids start at 1 so 0 means "not registered" */
    int n = atomic_load(&ntypes) + 1;
    if (n < MAX_TYPES) {
      types[n] = type;
      type->id = n;
      atomic_store(&ntypes, n);
    }
  }
  pthread_mutex_unlock(&types_lock);
}

/* A pointer that a Lua hook handed over (the array cdata hook, which a
 * script can replace through parx.c.array.init) may point anywhere a light
 * userdata can: a static marker, NULL.  It is never read here: only a type
 * that keeps a set of its live objects (`holds`) can vouch for it. */
int px_shared_known(const px_shared *obj) {
  if (!obj) return 0;
  int n = atomic_load(&ntypes);
  for (int i = 1; i <= n; i++) {
    int (*h)(const void *) = atomic_load(&holds[i]);
    if (h && h(obj)) return 1;
  }
  return 0;
}

void px_shared_register_holds(const px_shared_type *type, int (*fn)(const void *p)) {
  if (type->id > 0 && type->id < MAX_TYPES) atomic_store(&holds[type->id], fn);
}

void px_shared_init(px_shared *obj, const px_shared_type *type) {
  obj->type = type;
  atomic_init(&obj->refs, 1);
}

void px_shared_retain(px_shared *obj) {
  long before = atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed);
  PX_ASSERT(before > 0); /* retaining what was already freed */
}

void px_shared_release(px_shared *obj) {
  long before = atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel);
  PX_ASSERT(before > 0); /* a release without its reference: use after free */
  if (before == 1) obj->type->free(obj);
}

typedef struct proxy {
  px_shared *obj;
} proxy;

void *px_udata_take(lua_State *L, int idx) {
  void **field = lua_touserdata(L, idx);
  if (!field || !*field) return NULL;
  void *p = *field;
  *field = NULL;
  return p;
}

int px_msg_copy(px_msg *dst, const px_msg *src) {
  memset(dst, 0, sizeof *dst);
  dst->data = malloc(src->len ? src->len : 1);
  dst->refs = src->nrefs ? malloc(sizeof *dst->refs * (size_t)src->nrefs) : NULL;
  if (!dst->data || (src->nrefs && !dst->refs)) {
    free(dst->data);
    free(dst->refs);
    memset(dst, 0, sizeof *dst);
    return -1;
  }
  memcpy(dst->data, src->data, src->len);
  dst->len = dst->cap = src->len;
  for (int i = 0; i < src->nrefs; i++) {
    dst->refs[i] = src->refs[i];
    px_shared_retain(dst->refs[i]);
  }
  dst->nrefs = dst->refcap = src->nrefs;
  return 0;
}

static int proxy_gc(lua_State *L) {
  px_shared *obj = px_udata_take(L, 1);
  if (obj) px_shared_release(obj);
  return 0;
}

/* The VM's set of parx metatables: registry[&meta_set_key] = {mt = true}. */
static const char meta_set_key = 0;

/* Metatables are found by the type's address (a light userdata key in the
 * registry), not by name: no string is interned per call on hot paths. */
static void push_meta(lua_State *L, const px_shared_type *type) {
  lua_pushlightuserdata(L, (void *)type);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

void px_shared_meta(lua_State *L, const px_shared_type *type) {
  push_meta(L, type);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  if (luaL_newmetatable(L, type->name)) {
    lua_pushcfunction(L, proxy_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushstring(L, type->name);
    lua_setfield(L, -2, "__name");
    lua_pushstring(L, type->name);
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  lua_pushlightuserdata(L, (void *)type);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, (void *)&meta_set_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, (void *)&meta_set_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, (void *)type);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

void px_shared_push(lua_State *L, px_shared *obj) {
  proxy *p = lua_newuserdata(L, sizeof *p);
  p->obj = obj;
  push_meta(L, obj->type);
  if (lua_isnil(L, -1)) {
    /* First proxy of this type in this VM: the module did not open its
     * metatable yet (it arrives through the marshaller before the module
     * was required here).  Require it so the methods exist. */
    lua_pop(L, 1);
    px_shared_meta(L, obj->type);
  }
  lua_setmetatable(L, -2);
}

px_shared *px_shared_test_mt(lua_State *L, int idx, int mt) {
  if (!lua_getmetatable(L, idx)) return NULL;
  int same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  if (!same || lua_type(L, idx) != LUA_TUSERDATA || lua_objlen(L, idx) != sizeof(proxy)) return NULL;
  return ((proxy *)lua_touserdata(L, idx))->obj;
}

px_shared *px_shared_test(lua_State *L, int idx, const px_shared_type *type) {
  if (lua_type(L, idx) != LUA_TUSERDATA) return NULL;
  /* Only px_shared_push makes userdata of a parx metatable, all of this
   * size; anything else is not read. */
  if (lua_objlen(L, idx) != sizeof(proxy)) return NULL;
  if (!lua_getmetatable(L, idx)) return NULL;
  if (type) {
    push_meta(L, type);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!same) return NULL;
  } else {
    /* Identity, not a field: a script can put `__px_shared` or anything
     * else on a newproxy's or io.stdout's metatable. */
    lua_pushlightuserdata(L, (void *)&meta_set_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    int shared = 0;
    if (lua_istable(L, -1)) {
      lua_pushvalue(L, -2);
      lua_rawget(L, -2);
      shared = lua_type(L, -1) == LUA_TLIGHTUSERDATA;
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
    if (!shared) return NULL;
  }
  proxy *p = lua_touserdata(L, idx);
  return p->obj;
}

px_shared *px_shared_check(lua_State *L, int idx, const px_shared_type *type) {
  px_shared *obj = px_shared_test(L, idx, type);
  if (!obj) {
    const char *msg = lua_pushfstring(L, "%s expected, got %s",
                                      type ? type->name : "shared object",
                                      luaL_typename(L, idx));
    luaL_argerror(L, idx, msg);
  }
  return obj;
}
