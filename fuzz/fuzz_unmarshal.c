/*
 * fuzz_unmarshal.c -- libFuzzer target for the unmarshaller (`make fuzz`).
 *
 * Input: one mode byte, then the message.  Bit 0 of the mode byte picks
 * the mode: 0 data-only (px_unmarshal_data), 1 trusted (px_unmarshal).  The
 * trusted mode runs with fuzz/load_stub.c in place of the bytecode loader
 * (LuaJIT does not verify bytecode; trusted messages only come from
 * px_marshal in this process) and with empty package.path/cpath, so that a
 * module name can at most find a preloaded or loaded module.
 *
 * Besides crashes, sanitizer reports and leaks, the target aborts when one
 * message makes the Lua heap grow by more than ALLOC_LIMIT bytes per input
 * byte (plus a constant): the unmarshaller promises to bound what it
 * allocates by the size of its input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "marshal.h"

#define ALLOC_LIMIT 64
#define ALLOC_SLACK (512 * 1024)

static lua_State *L;
static unsigned long runs;

typedef struct input { px_msg *m; int trusted; } input;

static int run(lua_State *L) {
  input *in = lua_touserdata(L, 1);
  lua_settop(L, 0);
  int n = in->trusted ? px_unmarshal(L, in->m) : px_unmarshal_data(L, in->m);
  if (n < 0 && lua_type(L, -1) != LUA_TSTRING) abort(); /* errors are messages */
  return 0;
}

static void setup(void) {
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  /* No module can be found on disk: require sees only what is loaded or
   * preloaded. */
  lua_getglobal(L, "package");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) setup();
  if (size < 1) return 0;
  px_msg m;
  px_msg_init(&m);
  /* An exact-size heap copy, so that any read past the end is caught. */
  m.len = m.cap = size - 1;
  m.data = malloc(m.len ? m.len : 1);
  if (!m.data) abort();
  memcpy(m.data, data + 1, m.len);
  input in = {&m, data[0] & 1};
  size_t before = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_gc(L, LUA_GCSTOP, 0);
  int status = lua_cpcall(L, run, &in);
  size_t after = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  if (status != 0 && status != LUA_ERRMEM) {
    fprintf(stderr, "unexpected Lua error: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
  }
  if (after > before && after - before > m.len * ALLOC_LIMIT + ALLOC_SLACK) {
    fprintf(stderr, "a %zu-byte message allocated %zu bytes\n", m.len, after - before);
    abort();
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCRESTART, 0);
  if (++runs % 64 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  else lua_gc(L, LUA_GCSTEP, 0);
  px_msg_free(&m);
  return 0;
}
