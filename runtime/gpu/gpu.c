/* gpu.c -- placeholder until the module lands. */
#include "../core/px.h"

int px_open_gpu(lua_State *L) {
  lua_newtable(L);
  return 1;
}
