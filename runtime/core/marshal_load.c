/*
 * marshal_load.c -- a closure from received bytecode.
 *
 * Only trusted messages (px_unmarshal: made by px_marshal in this process)
 * get here: LuaJIT loads bytecode without verifying it, so forged bytecode
 * can corrupt memory.  The fuzz build (fuzz/, `make fuzz`) links a stub in
 * place of this file that makes a placeholder closure instead, so that the
 * rest of the trusted path (globals, upvalues, joins) is fuzzed without
 * fuzzing LuaJIT's loader.
 */
#include <stdio.h>

#include "marshal.h"

int px_marshal_load_function(lua_State *L, int state, const uint8_t *bc, size_t len,
                        char *err, size_t errlen) {
  /* A fresh closure from the VM's factory cache, else a plain load. */
  if (px_marshal_push_closure(L, state, bc, len)) return 0;
  if (luaL_loadbuffer(L, (const char *)bc, len, "=?") != 0) {
    snprintf(err, errlen, "cannot load a function here: %s",
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}
