/*
 * marshal_globals.c -- the globals a Lua function takes along: the writer
 * finds the names a function reads (GGET, nested functions included) and
 * whether it assigns globals (GSET) once per function and VM, caches them
 * with its bytecode, and sends the values each time (see "Globals" at the
 * top of marshal.c).
 *
 * The bytecode is read through LuaJIT's public jit.util (funcbc, funck),
 * by a few lines of Lua compiled once per VM (scan_src): the opcodes of
 * GGET and GSET come from probes compiled by this LuaJIT, and checked.
 * Without a usable jit.util no global is sent (the function reads the
 * receiver's) and every function is taken to assign globals.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

static int gettable_cf(lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

/* Push env[name]: rawget, then along a chain of __index tables (sandboxed
 * environments such as setmetatable(env, {__index = _G})).  An __index
 * function (busted's environments, strict mode) is called in a protected
 * call; an error there counts as nil. */
void px_marshal_get_global(lua_State *L, int env, int nameidx) {
  lua_pushvalue(L, env);
  for (int hops = 0;; hops++) {
    lua_pushvalue(L, nameidx);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1) || hops == 16 || !lua_getmetatable(L, -2)) break;
    lua_getfield(L, -1, "__index");
    if (lua_type(L, -1) != LUA_TTABLE) {
      int call = lua_isfunction(L, -1);
      lua_pop(L, 3);
      if (call) {
        lua_pushcfunction(L, gettable_cf);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, nameidx);
        if (lua_pcall(L, 2, 1, 0) != 0) {
          lua_pop(L, 1);
          lua_pushnil(L);
        }
      } else {
        lua_pushnil(L);
      }
      break;
    }
    lua_replace(L, -4); /* the __index table replaces the table searched */
    lua_pop(L, 2);
  }
  lua_remove(L, -2);
}

typedef struct names_ctx { writer *w; int env, set, list, n; } names_ctx;

/* Is the value on top a standard library's: a C function or a module? */
int px_marshal_is_std_value(writer *w) {
  lua_State *L = w->L;
  if (lua_iscfunction(L, -1)) return 1;
  int t = lua_type(L, -1);
  if ((t == LUA_TTABLE || t == LUA_TFUNCTION) && px_marshal_module_name(w, lua_gettop(L))) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

static void add_global(const char *s, size_t len, void *ud) {
  names_ctx *c = ud;
  lua_State *L = c->w->L;
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -1);
  lua_rawget(L, c->set);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, c->set);
  if (px_marshal_is_std_global(lua_tostring(L, -1))) {
    /* A standard name is left out if it holds its standard value now (a
     * script that replaces print later keeps the worker's own), else it is
     * flagged with a leading '\1' and checked again at send time. */
    px_marshal_get_global(L, c->env, lua_gettop(L));
    int std = px_marshal_is_std_value(c->w);
    lua_pop(L, 1);
    if (std) {
      lua_pop(L, 1);
      return;
    }
    lua_pushfstring(L, "\1%s", lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  lua_rawseti(L, c->list, 2 + c->n++);
}

static const char scan_src[] =
  "local util = ...\n"
  "local funcbc, funck = util.funcbc, util.funck\n"
  "local band, rshift, type = bit.band, bit.rshift, type\n"
  "local function probe(src, pc)\n"
  "  local ins = funcbc(assert(loadstring(src)), pc)\n"
  "  return band(ins, 0xff), funck(assert(loadstring(src)), -rshift(ins, 16) - 1)\n"
  "end\n"
  "local GGET, a = probe('return px_probe_a', 1)\n"
  "local GSET, b = probe('local s = \"px_probe_s\" px_probe_a = s', 2)\n"
  "assert(a == 'px_probe_a' and b == 'px_probe_a' and GGET ~= GSET)\n"
  "local function scan(f, names, seen)\n"
  "  local assigns, pc = false, 1\n"
  "  while true do\n"
  "    local ins = funcbc(f, pc)\n"
  "    if not ins then break end\n"
  "    local op = band(ins, 0xff)\n"
  "    if op == GGET then\n"
  "      local name = funck(f, -rshift(ins, 16) - 1)\n"
  "      if not seen[name] then seen[name] = true; names[#names + 1] = name end\n"
  "    elseif op == GSET then assigns = true end\n"
  "    pc = pc + 1\n"
  "  end\n"
  "  local n = -1\n"
  "  while true do\n"
  "    local k = funck(f, n)\n"
  "    if k == nil then break end\n"
  "    if type(k) == 'proto' and scan(k, names, seen) then assigns = true end\n"
  "    n = n - 1\n"
  "  end\n"
  "  return assigns\n"
  "end\n"
  "return function(f)\n"
  "  local names = {}\n"
  "  return names, scan(f, names, {})\n"
  "end\n";

/* Make the scanner (protected: it loads jit.util and compiles Lua). */
static int make_scan(lua_State *L) {
  if (luaL_loadbuffer(L, scan_src, sizeof scan_src - 1, "=parx.marshal") != 0)
    return lua_error(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "jit.util");
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) { /* not required yet: LuaJIT preloads it */
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD");
    lua_getfield(L, -1, "jit.util");
    lua_remove(L, -2);
    lua_call(L, 0, 1);
  }
  lua_call(L, 1, 1);
  return 1;
}

/* Push the VM's scanner, or return 0 (jit.util not usable here). */
static int push_scan(lua_State *L, int state) {
  lua_rawgeti(L, state, S_SCAN);
  if (lua_isfunction(L, -1)) return 1;
  int known = lua_type(L, -1) == LUA_TBOOLEAN;
  lua_pop(L, 1);
  if (known) return 0;
  lua_pushcfunction(L, make_scan);
  if (lua_pcall(L, 0, 1, 0) != 0 || !lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 0);
    lua_rawseti(L, state, S_SCAN);
    return 0;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, state, S_SCAN);
  return 1;
}

/* Push the cache entry {bytecode, global names...} of the Lua function at
 * idx, making it on first use. */
void px_marshal_function_entry(writer *w, int idx) {
  lua_State *L = w->L;
  lua_rawgeti(L, w->state, S_FCACHE);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_newtable(L);
  int entry = lua_gettop(L);
  lua_pushvalue(L, idx);
  px_marshal_dump_function(L);
  lua_rawseti(L, entry, 1);
  lua_pop(L, 1);
  /* entry[0] = true: the function (or one nested in it) assigns globals,
   * so the receiver gives it an environment of its own. */
  int assigns = 1;
  if (push_scan(L, w->state)) {
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 2, 0) == 0 && lua_type(L, -2) == LUA_TTABLE) {
      assigns = lua_toboolean(L, -1);
      lua_pop(L, 1);
      int names = lua_gettop(L);
      lua_getfenv(L, idx);
      lua_newtable(L);
      names_ctx c = {w, names + 1, names + 2, entry, 0};
      if (lua_type(L, c.env) == LUA_TTABLE) {
        for (int i = 1;; i++) {
          lua_rawgeti(L, names, i);
          size_t len;
          const char *name = lua_tolstring(L, -1, &len);
          if (!name) break;
          add_global(name, len, &c);
          lua_pop(L, 1);
        }
      }
    }
    lua_settop(L, entry);
  }
  if (assigns) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, entry, 0);
  }
  lua_pushvalue(L, idx);
  lua_pushvalue(L, entry);
  lua_rawset(L, entry - 1);
  lua_remove(L, entry - 1);
}
