/*
 * array.c -- the parx.array module's binding: the table of C functions the
 * Lua face (lua/parx/array.lua) reaches through the FFI, the registration
 * of its constructor and of the marshaller's cdata hook.  The array type
 * itself is the core's (core/array.h).
 *
 * The FFI reaches the C functions through a table of function pointers
 * (px_array_api, exported as a light userdata) rather than ffi.C, so the
 * module works the same whether libparx is the parx binary, a shared
 * library or a static library inside a host that was not linked with -E.
 */
#include <stddef.h>
#include <stdint.h>

#include "../core/array.h"

/* ------------------------------------------------------------------------
 * The function table the Lua face reaches through the FFI.  The order is
 * part of the declaration in lua/parx/array.lua.
 * ---------------------------------------------------------------------- */

typedef struct px_array_api {
  px_array *(*array_new)(int dtype, int ndim, const int64_t *shape);
  void (*release)(px_array *a);
  void (*fill_bytes)(px_array *a, const void *elem);
  long (*live)(void);
  uint16_t (*f64_to_f16)(double d);
  double (*f16_to_f64)(uint16_t h);
  uint16_t (*f64_to_bf16)(double d);
  double (*bf16_to_f64)(uint16_t h);
  const float *(*half_table)(int which);
  int64_t (*atomic_add)(px_array *a, int64_t off, int64_t delta);
  int (*atomic_cas)(px_array *a, int64_t off, int64_t expected,
                    int64_t desired);
  void (*retain)(px_array *a);
  px_array *(*array_new_uninit)(int dtype, int ndim, const int64_t *shape);
} px_array_api;

static const px_array_api api = {
  px_array_new,  px_array_release, px_array_fill_bytes, px_array_live,
  px_f64_to_f16, px_f16_to_f64,    px_f64_to_bf16,      px_bf16_to_f64,
  px_half_table, px_array_atomic_add, px_array_atomic_cas, px_array_retain,
  px_array_new_uninit,
};

/* init(ctor, hook): called once per VM by lua/parx/array.lua. */
static int init_lua(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  px_array_set_ctor(L);
  lua_pushlightuserdata(L, (void *)&px_cdata_hook_key);
  lua_pushvalue(L, 2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

/* tolight(cdata): the array pointer a cdata holds, as a light userdata, or
 * nothing when it does not point to a live array of ours.  The Lua hook
 * checks the cdata's type and that it is one of the array cdata it made
 * before it calls this; for a pointer cdata, lua_topointer gives the
 * address of the pointer it holds. */
static int tolight_lua(lua_State *L) {
  if (lua_type(L, 1) != PX_LUA_TCDATA) return 0;
  void *const *slot = lua_topointer(L, 1);
  if (!slot || !*slot || !px_array_holds(*slot)) return 0;
  lua_pushlightuserdata(L, *slot);
  return 1;
}

static int live_lua(lua_State *L) {
  lua_pushnumber(L, (lua_Number)px_array_live());
  return 1;
}

static int zero_filled_lua(lua_State *L) {
  lua_pushnumber(L, (lua_Number)px_array_zero_filled());
  return 1;
}

static const luaL_Reg functions[] = {
  {"init", init_lua}, {"tolight", tolight_lua}, {"live", live_lua},
  {"zero_filled", zero_filled_lua}, {NULL, NULL},
};

int px_open_array(lua_State *L) {
  px_array_register_type();
  lua_newtable(L);
  luaL_register(L, NULL, functions);
  lua_pushlightuserdata(L, (void *)&api);
  lua_setfield(L, -2, "api");
  lua_pushinteger(L, PX_ARRAY_MAXDIM);
  lua_setfield(L, -2, "maxdim");
  /* The Lua face declares the header as opaque bytes: it checks these. */
  lua_pushinteger(L, (lua_Integer)offsetof(px_array, data));
  lua_setfield(L, -2, "data_offset");
  lua_pushinteger(L, (lua_Integer)sizeof(px_array));
  lua_setfield(L, -2, "struct_size");
  return 1;
}
