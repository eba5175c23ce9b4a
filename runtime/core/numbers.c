/*
 * numbers.c -- runs of numbers between Lua tables and arrays of doubles
 * (see numbers.h).
 */
#include "numbers.h"
#include "marshal.h"

size_t px_numbers_get(lua_State *L, int t, size_t from, size_t n, double *out) {
  size_t k = 0;
  if (px_marshal_layout_state > 0 && from >= 1) {
    uint32_t asize;
    const uint64_t *arr = tab_array(lua_topointer(L, t), &asize);
    size_t lim = asize > from ? asize - from : 0;
    if (lim > n) lim = n;
    for (; k < lim; k++) {
      uint64_t v = arr[from + k];
      if (!slot_is_num(v)) return k;
      memcpy(&out[k], &v, 8);
    }
  }
  for (; k < n; k++) {
    lua_rawgeti(L, t, (int)(from + k));
    int num = lua_type(L, -1) == LUA_TNUMBER;
    if (num) out[k] = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!num) break;
  }
  return k;
}

void px_numbers_set(lua_State *L, int t, size_t from, size_t n, const void *in) {
  const char *src = in;
  size_t k = 0;
  if (px_marshal_layout_state > 0 && from >= 1) {
    uint32_t asize;
    uint64_t *arr = tab_array(lua_topointer(L, t), &asize);
    size_t lim = asize > from ? asize - from : 0;
    if (lim > n) lim = n;
    for (; k < lim; k++) {
      uint64_t v;
      double d;
      memcpy(&v, src + 8 * k, 8);
      memcpy(&d, &v, 8);
      if (d != d) v = 0xfff8000000000000ull; /* LuaJIT's canonical NaN */
      arr[from + k] = v;
    }
  }
  for (; k < n; k++) {
    double d;
    memcpy(&d, src + 8 * k, 8);
    lua_pushnumber(L, d);
    lua_rawseti(L, t, (int)(from + k));
  }
}
