/*
 * luaopen_parx.c -- `require "parx"` from a plain LuaJIT (or any host that
 * embeds LuaJIT: Neovim, LOVE, an OpenResty-style server).
 *
 * libparx.so is also a Lua C module: installed as parx.so where LuaJIT
 * looks for C modules (`make install` links it into LUA_CMODDIR), it opens
 * a parx runtime on the first require, with its own main VM and its worker
 * VMs.  The host's lua_State does not become a parx VM: parx's functions
 * park tasks, which only a VM driven by the runtime can do.  Instead the
 * module gives the host a bridge, written against parx.h only (a face, like
 * the command line):
 *
 *   parx.run(fn, ...)    run fn(...) as a task of the runtime's main VM,
 *                        where the whole parx API is, and return its
 *                        results (raising its error); drives the loop
 *                        until then
 *   parx.map(fn, list)   parx.pool.map(fn, list) over the workers
 *   parx.start(fn, ...)  the same as run without waiting: a handle with
 *                        h:done() and h:result() (results, or raises)
 *   parx.step([wait])    one step of the main VM's loop: with wait, block
 *                        until something happened; returns true while work
 *                        is left.  A host that has its own loop calls it
 *                        when parx.fd() is readable or after parx.timeout()
 *                        milliseconds, as luv is driven inside Neovim
 *   parx.fd(), parx.timeout()   parx_backend_fd and parx_backend_timeout
 *   parx.close()         close the runtime (also done when the module is
 *                        collected, at the host's lua_close)
 *
 * fn and the values cross as copies: nil, booleans, numbers, strings,
 * tables of those (no cycles) and functions, in both directions.  A
 * function crosses as its bytecode (string.dump): an upvalue arrives as the
 * receiving VM's global of the same name (`parx`, `string` ...), else nil.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "parx.h"

/* Lua shared by both sides: encode(v) turns a value into Lua source that
 * decode() (a load with loadstring in its environment) turns back. */
#define CODEC                                                                \
  "local type, pairs, tostring, format, dump, concat, loadstring, setfenv, pcall ="  \
  " type, pairs, tostring, string.format, string.dump, table.concat,"        \
  " loadstring, setfenv, pcall\n"                                                   \
  "local function enc(v, out, seen)\n"                                       \
  "  local t = type(v)\n"                                                    \
  "  if t == 'nil' or t == 'boolean' then out[#out + 1] = tostring(v)\n"     \
  "  elseif t == 'number' then\n"                                            \
  "    if v ~= v then out[#out + 1] = '(0/0)'\n"                             \
  "    elseif v == 1/0 then out[#out + 1] = '(1/0)'\n"                       \
  "    elseif v == -1/0 then out[#out + 1] = '(-1/0)'\n"                     \
  "    else out[#out + 1] = format('%.17g', v) end\n"                        \
  "  elseif t == 'string' then out[#out + 1] = format('%q', v)\n"            \
  "  elseif t == 'function' then\n"                                          \
  "    local ok, code = pcall(dump, v)\n"                                    \
  "    if not ok then error('parx: a C function cannot be copied', 0) end\n" \
  "    out[#out + 1] = 'loadstring(' .. format('%q', code) .. ')'\n"        \
  "  elseif t == 'table' then\n"                                             \
  "    if seen[v] then error('parx: a table with a cycle cannot be copied', 0) end\n" \
  "    seen[v] = true\n"                                                     \
  "    out[#out + 1] = '{'\n"                                                \
  "    for k, x in pairs(v) do\n"                                            \
  "      out[#out + 1] = '['; enc(k, out, seen); out[#out + 1] = ']='\n"     \
  "      enc(x, out, seen); out[#out + 1] = ','\n"                           \
  "    end\n"                                                                \
  "    out[#out + 1] = '}'\n"                                                \
  "    seen[v] = nil\n"                                                      \
  "  else error('parx: a ' .. t .. ' cannot be copied between the host and parx', 0) end\n" \
  "end\n"                                                                    \
  "local function encode(...)\n"                                             \
  "  local out = {'{n = ', tostring(select('#', ...)), ','}\n"               \
  "  for i = 1, select('#', ...) do\n"                                       \
  "    out[#out + 1] = '[' .. i .. ']='; enc((select(i, ...)), out, {}); out[#out + 1] = ','\n" \
  "  end\n"                                                                  \
  "  out[#out + 1] = '}'\n"                                                  \
  "  return concat(out)\n"                                                   \
  "end\n"                                                                    \
  "local getupvalue, setupvalue, G = debug.getupvalue, debug.setupvalue, _G\n" \
  "local function load_function(code)\n"                                    \
  "  local f = assert(loadstring(code))\n"                                   \
  "  for i = 1, 255 do\n"                                                    \
  "    local name = getupvalue(f, i)\n"                                      \
  "    if name == nil then break end\n"                                      \
  "    if G[name] ~= nil then setupvalue(f, i, G[name]) end\n"               \
  "  end\n"                                                                  \
  "  return f\n"                                                             \
  "end\n"                                                                    \
  "local function decode(s)\n"                                               \
  "  local f = assert(loadstring('return ' .. s, '=parx'))\n"                \
  "  setfenv(f, {loadstring = load_function})\n"                             \
  "  return f()\n"                                                           \
  "end\n"

/* The main VM's half, run once at open: a task body that decodes a call,
 * runs it protected and leaves the encoded outcome for the host. */
static const char main_side[] = CODEC
  "local unpack, pcall, tostring = unpack, pcall, tostring\n"
  "local results = {}\n"
  "local function run(id, call)\n"
  "  local c = decode(call)\n"
  "  local function finish(ok, ...)\n"
  "    if ok then results[id] = encode(true, ...)\n"
  "    else results[id] = encode(false, tostring((...))) end\n"
  "  end\n"
  "  finish(pcall(function() return c[1](unpack(c, 2, c.n)) end))\n"
  "end\n"
  "debug.getregistry()['parx.host'] = {run = run, results = results}\n";

/* The host's half: the module table, around the C functions below. */
static const char host_side[] = CODEC
  "local c = ...\n"
  "local M = {}\n"
  "local Handle = {}\n"
  "Handle.__index = Handle\n"
  "function M.start(fn, ...)\n"
  "  if type(fn) ~= 'function' then error('bad argument #1 to start (function expected)', 2) end\n"
  "  return setmetatable({id = c.start(encode(fn, ...))}, Handle)\n"
  "end\n"
  "function Handle:done()\n"
  "  if self.outcome == nil then self.outcome = c.poll(self.id) end\n"
  "  return self.outcome ~= nil\n"
  "end\n"
  "function Handle:result()\n"
  "  if not self:done() then return nil end\n"
  "  local r = decode(self.outcome)\n"
  "  if not r[1] then error(r[2], 0) end\n"
  "  return unpack(r, 2, r.n)\n"
  "end\n"
  "function M.run(fn, ...)\n"
  "  local h = M.start(fn, ...)\n"
  "  while not h:done() do c.step(false) end\n"
  "  return h:result()\n"
  "end\n"
  "function M.map(fn, list)\n"
  "  return M.run(function(f, l) return parx.pool.map(f, l) end, fn, list)\n"
  "end\n"
  "function M.step(wait) return c.step(not wait) end\n"
  "M.fd, M.timeout, M.close = c.fd, c.timeout, c.close\n"
  "M.version = c.version\n"
  "return M\n";

typedef struct host {
  parx_runtime *rt;
  int next_id;
} host;

#define HOST_MT "parx.host"

static host *check_open(lua_State *L) {
  host *h = luaL_checkudata(L, lua_upvalueindex(1), HOST_MT);
  if (h->rt == NULL) luaL_error(L, "parx: the runtime is closed");
  return h;
}

/* A failed parx_* result as a Lua error of the host. */
static int fail(lua_State *L, host *h, int r) {
  if (r == PARX_EXIT) return luaL_error(L, "parx: os.exit(%d) was called in parx", parx_exit_code(h->rt));
  return luaL_error(L, "parx: %s", parx_last_error(h->rt));
}

/* c.start(call) -> id: a task of the main VM running the encoded call. */
static int h_start(lua_State *L) {
  host *h = check_open(L);
  size_t len;
  const char *call = luaL_checklstring(L, 1, &len);
  lua_State *M = parx_state(h->rt);
  lua_getfield(M, LUA_REGISTRYINDEX, "parx.host");
  lua_getfield(M, -1, "run");
  lua_remove(M, -2);
  int id = ++h->next_id;
  lua_pushinteger(M, id);
  lua_pushlstring(M, call, len);
  int r = parx_start_function(h->rt, 2);
  if (r != PARX_OK) return fail(L, h, r);
  lua_pushinteger(L, id);
  return 1;
}

/* c.poll(id) -> the encoded outcome once the call finished, else nil. */
static int h_poll(lua_State *L) {
  host *h = check_open(L);
  int id = (int)luaL_checkinteger(L, 1);
  lua_State *M = parx_state(h->rt);
  lua_getfield(M, LUA_REGISTRYINDEX, "parx.host");
  lua_getfield(M, -1, "results");
  lua_rawgeti(M, -1, id);
  if (lua_type(M, -1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(M, -1, &len);
    lua_pushlstring(L, s, len);
    lua_pushnil(M);
    lua_rawseti(M, -3, id);
  } else {
    lua_pushnil(L);
  }
  lua_pop(M, 3);
  return 1;
}

/* c.step(nowait) -> whether work is left. */
static int h_step(lua_State *L) {
  host *h = check_open(L);
  int r = parx_step(h->rt, lua_toboolean(L, 1));
  if (r < 0) return fail(L, h, r);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int h_fd(lua_State *L) {
  lua_pushinteger(L, parx_backend_fd(check_open(L)->rt));
  return 1;
}

static int h_timeout(lua_State *L) {
  lua_pushinteger(L, parx_backend_timeout(check_open(L)->rt));
  return 1;
}

static int h_close(lua_State *L) {
  host *h = luaL_checkudata(L, lua_upvalueindex(1), HOST_MT);
  if (h->rt != NULL) parx_close(h->rt);
  h->rt = NULL;
  return 0;
}

static int h_gc(lua_State *L) {
  host *h = luaL_checkudata(L, 1, HOST_MT);
  if (h->rt != NULL) parx_close(h->rt);
  h->rt = NULL;
  return 0;
}

static const luaL_Reg host_fns[] = {
  {"start", h_start}, {"poll", h_poll}, {"step", h_step}, {"fd", h_fd},
  {"timeout", h_timeout}, {"close", h_close}, {NULL, NULL}};

int luaopen_parx(lua_State *L) {
  host *h = lua_newuserdata(L, sizeof *h);
  h->rt = NULL;
  h->next_id = 0;
  if (luaL_newmetatable(L, HOST_MT)) {
    lua_pushcfunction(L, h_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  /* Deadlock checks stay off: the host may feed work at any time. */
  parx_options o;
  parx_options_init(&o);
  o.deadlock_check = 0;
  h->rt = parx_open(&o);
  if (h->rt == NULL) return luaL_error(L, "parx: cannot start the runtime");
  int r = parx_run_string(h->rt, main_side, "=parx.host", 0);
  if (r != PARX_OK) return fail(L, h, r);

  if (luaL_loadbuffer(L, host_side, sizeof host_side - 1, "=parx") != 0) return lua_error(L);
  lua_newtable(L);
  for (const luaL_Reg *f = host_fns; f->name != NULL; f++) {
    lua_pushvalue(L, -3); /* the host userdata, kept alive by every closure */
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
  lua_pushliteral(L, PARX_VERSION);
  lua_setfield(L, -2, "version");
  lua_call(L, 1, 1);
  return 1;
}
