/* lib_base.c -- the standard functions a task needs changed:
 * coroutine.resume, coroutine.wrap, coroutine.status and os.exit; and
 * print, whose line must go out whole (print, below).
 *
 * pcall and xpcall stay LuaJIT's own (fast functions, yieldable): a
 * cancellation unwinds through them like any error, and sched.c handles
 * the one case the hook cannot reach from inside (a parked C function that
 * pcall called itself).
 *
 * coroutine.resume and wrap must be replaced: a task that parks inside a
 * coroutine of its own yields to that coroutine's resumer, not to the
 * scheduler.  These resume as LuaJIT does (the same checks and messages)
 * and, when the coroutine parked, park their own coroutine in turn
 * (px_sched_forward); the scheduler then resumes the innermost coroutine
 * directly when the wait ends, and hands its outcome back to the resumer
 * as the results of this call.  A resume that does not park costs one C
 * call more than LuaJIT's fast function.
 *
 * os.exit records the status, stops the runtime and unwinds the task with
 * the exit marker, which no pcall can keep: every Lua instruction the VM
 * runs afterwards raises it again (px_sched_exit).
 */
#include "core.h"

/* What ffh_resume in LuaJIT's lib_base.c refuses, with its messages:
 * NULL if co can be resumed. */
static const char *cannot_resume(lua_State *L, lua_State *co) {
  int status = lua_status(co);
  if (status == LUA_YIELD) /* its stack is empty unless it forwards a park */
    return lua_gettop(co) >= 3 && px_sched_is_forwarding(co) ? "cannot resume running coroutine" : NULL;
  if (status != 0) return "cannot resume dead coroutine";
  lua_Debug ar;
  if (co == L || lua_getstack(co, 0, &ar)) return "cannot resume running coroutine";
  if (lua_gettop(co) == 0) return "cannot resume dead coroutine";
  return NULL;
}

/* Resume co with the values from L's index first up; leave its outcome on
 * L as coroutine.resume returns it (wrap: as wrap does) and return the
 * count. */
static int resume(lua_State *L, lua_State *co, int first, int wrap) {
  const char *why = cannot_resume(L, co);
  if (why) {
    if (wrap) {
      luaL_where(L, 1);
      lua_pushstring(L, why);
      lua_concat(L, 2);
      return lua_error(L);
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
  }
  /* The hot path of a generator loop: as few API calls as it takes. */
  int nargs = lua_gettop(L) - first + 1;
  if (nargs > 0) {
    if (!lua_checkstack(co, nargs + LUA_MINSTACK)) {
      luaL_where(L, 1);
      lua_pushliteral(L, "stack overflow");
      lua_concat(L, 2);
      return lua_error(L);
    }
    lua_xmove(L, co, nargs);
  }
  int status = lua_resume(co, nargs);
  int n = lua_gettop(co);
  if (status == LUA_YIELD && n >= 1) {
    const void *top = lua_touserdata(co, -1);
    if (top && (top == (void *)&px_park_marker || px_sched_is_forwarding(co))) {
      px_task *t = px_task_current(L);
      if (t && t->wait) return px_sched_forward(L, co, wrap);
    }
  }
  if (status == 0 || status == LUA_YIELD) {
    if (n >= LUA_MINSTACK - 1 && !lua_checkstack(L, n + 1)) {
      lua_settop(co, 0);
      luaL_where(L, 1);
      lua_pushliteral(L, "too many results to resume");
      lua_concat(L, 2);
      return lua_error(L);
    }
    if (!wrap) lua_pushboolean(L, 1);
    lua_xmove(co, L, n);
    return n + !wrap;
  }
  lua_xmove(co, L, 1); /* the error */
  if (!wrap) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  /* As LuaJIT's wrap: a string gets where the wrapped function was
   * called from (nothing when a C function called it). */
  if (lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co, 1, "coroutine expected");
  return resume(L, co, 2, 0);
}

static int wrapped(lua_State *L) {
  return resume(L, lua_tothread(L, lua_upvalueindex(1)), 1, 1);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, wrapped, 1);
  return 1;
}

/* LuaJIT's, and "normal" for a coroutine whose resume forwarded a park
 * (it is suspended only as far as LuaJIT knows). */
static int co_status(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co, 1, "coroutine expected");
  const char *s;
  lua_Debug ar;
  int status = lua_status(co);
  if (co == L) s = "running";
  else if (status == LUA_YIELD) s = px_sched_is_forwarding(co) ? "normal" : "suspended";
  else if (status != 0) s = "dead";
  else if (lua_getstack(co, 0, &ar)) s = "normal";
  else if (lua_gettop(co) == 0) s = "dead";
  else s = "suspended";
  lua_pushstring(L, s);
  return 1;
}

static int os_exit(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  int code;
  if (lua_isnoneornil(L, 1)) code = 0;
  else if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? 0 : 1;
  else code = (int)luaL_checkinteger(L, 1);
  if (!vm) return luaL_error(L, "os.exit: not in a parx VM");
  px_runtime_exit(vm->rt, code);
  px_sched_exit(L);
  lua_pushlightuserdata(L, (void *)&px_exit_marker);
  return lua_error(L);
}

/* LuaJIT's print, but the whole line goes out in one fwrite: stdout is
 * one FILE for every VM of the process, and LuaJIT's print writes each
 * argument, tab and the newline with calls of their own, so two workers'
 * prints could share a line ("hello 1hello 2").  Each value is converted
 * by the global tostring, as LuaJIT does, before anything is written. */
static int print(lua_State *L) {
  int n = lua_gettop(L);
  lua_getglobal(L, "tostring");
  int tostr = n + 1;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, tostr);
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    if (!lua_isstring(L, -1)) return luaL_error(L, "'tostring' must return a string to 'print'");
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *line = lua_tolstring(L, -1, &len);
  fwrite(line, 1, len, stdout);
  return 0;
}

/* Called once per VM at start-up, before any code of the script ran. */
int px_base_open(lua_State *L) {
  static const luaL_Reg co_funcs[] = {
      {"resume", co_resume}, {"wrap", co_wrap}, {"status", co_status}, {NULL, NULL}};
  lua_getglobal(L, "coroutine");
  for (const luaL_Reg *r = co_funcs; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, print);
  lua_setglobal(L, "print");
  lua_getglobal(L, "os");
  lua_pushcfunction(L, os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  return 0;
}
