/*
 * load_stub.c -- the fuzz build's px_marshal_load_function (the real one is
 * runtime/core/marshal_load.c).  LuaJIT's bytecode loader is not fuzzed:
 * it trusts its input by design, and parx only hands it trusted messages.
 * A placeholder closure with eight upvalues stands in for the function, so
 * that what follows it in the message (globals, upvalues, joins) is read
 * as it would be.
 */
#include <stdio.h>

#include "marshal.h"

int px_marshal_load_function(lua_State *L, int state, const uint8_t *bc, size_t len,
                        char *err, size_t errlen) {
  (void)state;
  (void)bc;
  (void)len;
  if (luaL_loadstring(L, "local a, b, c, d, e, f, g, h\n"
                         "return function() return a, b, c, d, e, f, g, h end") != 0) {
    snprintf(err, errlen, "stub: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  lua_call(L, 0, 1);
  return 0;
}
