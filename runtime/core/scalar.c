/*
 * scalar.c -- reading scalars back (see scalar.h for the writers), and
 * 64-bit integer cdata, which only LuaJIT's FFI can make or take apart.
 *
 * Lua's C API has no way to read the value of an int64_t cdata or to
 * push one, and the FFI's public interface does both in two lines of Lua.
 * So each VM compiles, on the first 64-bit integer it sends or receives,
 * a pair of FFI helpers (kept in the registry) that copy the 8 bytes
 * through a pointer the C side hands over.  The cost, one protected call
 * per such value, matters only to programs that send them by the million,
 * and those would send arrays instead.
 */
#include <lualib.h>
#include <stdlib.h>

#include "scalar.h"

static const char helpers_key = 0;

/* write(v, p): 1 (int64_t, its bits stored at p), 2 (uint64_t, likewise)
 * or 0 (another cdata).  read(p, kind): a new int64_t (kind 1) or
 * uint64_t (kind 2) holding the bits at p. */
static const char helpers_src[] =
  "local ffi = ...\n"
  "local i64, u64 = ffi.typeof('int64_t'), ffi.typeof('uint64_t')\n"
  "local pi64 = ffi.typeof('int64_t *')\n"
  "local istype, cast = ffi.istype, ffi.cast\n"
  "return {function(v, p)\n"
  "  if istype(i64, v) then cast(pi64, p)[0] = v return 1 end\n"
  "  if istype(u64, v) then cast(pi64, p)[0] = cast(i64, v) return 2 end\n"
  "  return 0\n"
  "end, function(p, kind)\n"
  "  local v = i64(cast(pi64, p)[0])\n"
  "  if kind == 2 then return cast(u64, v) end\n"
  "  return v\n"
  "end}\n";

/* Make the helpers (protected: it loads the FFI and compiles Lua). */
static int make_helpers(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "ffi");
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushcfunction(L, luaopen_ffi);
    lua_call(L, 0, 1);
  }
  if (luaL_loadbuffer(L, helpers_src, sizeof helpers_src - 1, "=parx.scalar") != 0)
    return lua_error(L);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  lua_pushlightuserdata(L, (void *)&helpers_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 1;
}

/* Push helper i (1 write, 2 read); 0, or -1 with nothing pushed. */
static int push_helper(lua_State *L, int i) {
  if (!lua_checkstack(L, 8)) return -1;
  lua_pushlightuserdata(L, (void *)&helpers_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushcfunction(L, make_helpers);
    if (lua_pcall(L, 0, 1, 0) != 0 || lua_type(L, -1) != LUA_TTABLE) {
      lua_pop(L, 1);
      return -1;
    }
  }
  lua_rawgeti(L, -1, i);
  lua_remove(L, -2);
  return 0;
}

size_t px_scalar_put_cdata(lua_State *L, int idx, uint8_t *p) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  int64_t bits = 0;
  if (push_helper(L, 1)) return 0;
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, &bits);
  int kind = 0;
  if (lua_pcall(L, 2, 1, 0) == 0) kind = (int)lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (kind != 1 && kind != 2) return 0;
  p[0] = kind == 1 ? T_INT64 : T_UINT64;
  memcpy(p + 1, &bits, 8);
  return 9;
}

static int push_int64(lua_State *L, int kind, int64_t bits) {
  if (push_helper(L, 2)) return -1;
  lua_pushlightuserdata(L, &bits);
  lua_pushnumber(L, kind);
  if (lua_pcall(L, 2, 1, 0) != 0) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int px_scalar_push_int64(lua_State *L, int is_unsigned, int64_t bits) {
  return push_int64(L, is_unsigned ? 2 : 1, bits);
}
