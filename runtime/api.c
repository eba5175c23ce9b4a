/* api.c -- the embedding API (parx.h) over the core's accessors
 * (core/runtime.h): a face, it sees no structure of the core. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "modules.h"
#include "parx.h"

#define RT(p) ((px_runtime *)(p))

void parx_options_init(parx_options *o) {
  memset(o, 0, sizeof *o);
  o->deadlock_check = 1;
}

parx_runtime *parx_open(const parx_options *o) {
  parx_options def;
  if (!o) {
    parx_options_init(&def);
    o = &def;
  }
  return (parx_runtime *)px_runtime_new(o->workers, o->deadlock_check, o->trace, px_modules);
}

void parx_close(parx_runtime *rt) {
  if (rt) px_runtime_close(RT(rt), -1);
}

int parx_close_timeout(parx_runtime *rt, int timeout_ms) {
  if (!rt) return 0;
  return px_runtime_close(RT(rt), timeout_ms < 0 ? 0 : timeout_ms);
}

int parx_dump_on_sigusr1(parx_runtime *rt) {
  return px_trace_watch_usr1(px_runtime_main(RT(rt))) == 0 ? PARX_OK : PARX_ERRMEM;
}

lua_State *parx_state(parx_runtime *rt) { return px_runtime_state(RT(rt)); }

/* Everything this file does on the main VM's lua_State runs protected
 * (px_runtime_protect): an error there becomes the last error and a
 * result code, never a panic.  After a panic (state.c) the main VM is
 * dead and nothing here touches it: every call returns PARX_ERRPANIC. */

static int panicked(px_runtime *rt) { return px_runtime_panicked(rt); }

/* Every call that runs or drives code starts here: after a panic nothing
 * runs; an os.exit already reported to the host (PARX_EXIT) is forgotten,
 * so the host's next run runs. */
static int begin(px_runtime *rt) {
  if (panicked(rt)) return 0;
  px_host_rearm(rt);
  return 1;
}

int parx_register(parx_runtime *prt, const char *name, lua_CFunction fn) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  int err = px_runtime_register(rt, name, fn, NULL);
  return err == 0 ? PARX_OK : err == UV_ENOMEM ? PARX_ERRMEM : PARX_ERRRUN;
}

int parx_register_module(parx_runtime *prt, const char *name, const luaL_Reg *funcs) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  if (!name || !funcs) {
    px_runtime_set_error(rt, "parx_register_module: the name and the functions are required");
    return PARX_ERRRUN;
  }
  int err = px_runtime_register(rt, name, NULL, funcs);
  if (err == UV_EBUSY)
    px_runtime_set_error(rt, "parx_register_module: workers are running; register before running code");
  return err == 0 ? PARX_OK : err == UV_ENOMEM ? PARX_ERRMEM : PARX_ERRRUN;
}

typedef struct args_args {
  int argc;
  char **argv;
  int script;
} args_args;

static int set_args_p(lua_State *L) {
  args_args *a = lua_touserdata(L, 1);
  lua_createtable(L, a->argc - a->script > 0 ? a->argc - a->script : 0, a->script + 1);
  for (int i = 0; i < a->argc; i++) {
    lua_pushstring(L, a->argv[i]);
    lua_rawseti(L, -2, i - a->script);
  }
  lua_setglobal(L, "arg");
  return 0;
}

void parx_set_args(parx_runtime *prt, int argc, char **argv, int script) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return;
  args_args a = {argc, argv, script};
  px_runtime_protect(rt, set_args_p, &a);
}

const char *parx_last_error(parx_runtime *prt) { return px_runtime_last_error(RT(prt)); }

int parx_exit_code(parx_runtime *rt) { return px_runtime_exit_code(RT(rt)); }

/* ---- running ------------------------------------------------------- */

/* The result of a run that the runtime stopped: os.exit (reported once:
 * the next run rearms it, see begin), or a panic. */
static int stopped(px_runtime *rt) {
  if (panicked(rt)) return PARX_ERRPANIC;
  px_host_exit_reported(rt);
  return PARX_EXIT;
}

/* The outcome of ended main-VM task f, as a result code. */
static int outcome(px_runtime *rt, px_future *f) {
  switch (px_host_outcome(rt, f)) {
  case PX_OUTCOME_DONE: return PARX_OK;
  case PX_OUTCOME_STOPPED: return stopped(rt);
  case PX_OUTCOME_DEADLOCK: return PARX_ERRDEADLOCK;
  default: return PARX_ERRRUN;
  }
}

static int drain(px_runtime *rt) {
  if (px_runtime_stopped(rt)) return stopped(rt);
  px_host_drain(rt);
  return px_runtime_stopped(rt) ? stopped(rt) : PARX_OK;
}

static int run_loaded(px_runtime *rt, int nargs, int do_drain) {
  px_future *f = px_host_start(rt, nargs);
  if (!f) return PARX_ERRMEM;
  int r = px_host_wait(rt, f) == 0 ? PARX_OK : PARX_ERRRUN;
  if (r == PARX_OK) {
    if (panicked(rt)) r = PARX_ERRPANIC;
    else if (px_future_done(f)) r = outcome(rt, f);
    else r = px_runtime_stopped(rt) ? stopped(rt) : PARX_ERRRUN;
  }
  px_future_release(f);
  if (r == PARX_OK && do_drain) r = drain(rt);
  /* parx_last_error describes the last failure of a run, not an older
   * one: a run that succeeded leaves it empty. */
  if (r == PARX_OK) px_runtime_set_error(rt, NULL);
  return r;
}

/* Compile code onto the main VM's stack; PARX_ERRSYNTAX with the message
 * kept as the last error when it does not compile.  (luaL_loadbuffer is
 * protected itself.) */
static int load_string(px_runtime *rt, const char *code, const char *chunkname) {
  lua_State *L = px_runtime_state(rt);
  int st = luaL_loadbuffer(L, code, strlen(code), chunkname ? chunkname : code);
  if (st != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not enough memory");
    lua_pop(L, 1);
    return st == LUA_ERRMEM ? PARX_ERRMEM : PARX_ERRSYNTAX;
  }
  return PARX_OK;
}

int parx_run_string(parx_runtime *prt, const char *code, const char *chunkname, int do_drain) {
  px_runtime *rt = RT(prt);
  if (!begin(rt)) return PARX_ERRPANIC;
  int r = load_string(rt, code, chunkname);
  return r != PARX_OK ? r : run_loaded(rt, 0, do_drain);
}

/* Protected: push arg[1..n] (read raw: the script may have replaced the
 * globals' metatable) and return them. */
static int script_args_p(lua_State *L) {
  lua_pushliteral(L, "arg");
  lua_rawget(L, LUA_GLOBALSINDEX);
  if (!lua_istable(L, -1)) return 0;
  int n = (int)lua_objlen(L, -1);
  luaL_checkstack(L, n + 2, "too many arguments");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, 2, i);
  return n;
}

int parx_run_file(parx_runtime *prt, const char *path, int do_drain) {
  px_runtime *rt = RT(prt);
  if (!begin(rt)) return PARX_ERRPANIC;
  lua_State *L = px_runtime_state(rt);
  int st = luaL_loadfile(L, path);
  if (st != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not enough memory");
    lua_pop(L, 1);
    return st == LUA_ERRFILE ? PARX_ERRFILE : st == LUA_ERRMEM ? PARX_ERRMEM : PARX_ERRSYNTAX;
  }
  /* The script's arguments (arg[1..n]) are also its `...`. */
  int top = lua_gettop(L);
  if (px_cpcall(L, script_args_p, NULL, LUA_MULTRET) != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not enough memory");
    lua_settop(L, top - 1);
    return PARX_ERRMEM;
  }
  return run_loaded(rt, lua_gettop(L) - top, do_drain);
}

/* Keep f in a registry list to report its failure in parx_step. */
static int keep_started_p(lua_State *L) {
  px_future *f = lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "parx.started");
  }
  px_future_push(L, f);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  return 0;
}

int parx_start_function(parx_runtime *prt, int nargs) {
  px_runtime *rt = RT(prt);
  if (!begin(rt)) return PARX_ERRPANIC;
  px_future *f = px_host_start(rt, nargs);
  if (!f) return PARX_ERRMEM;
  int r = px_runtime_protect(rt, keep_started_p, f) != 0 ? PARX_ERRMEM : PARX_OK;
  px_future_release(f);
  return r;
}

/* Tasks started without driving; their failures surface in parx_step. */
int parx_start_string(parx_runtime *prt, const char *code, const char *chunkname) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  int r = load_string(rt, code, chunkname);
  return r != PARX_OK ? r : parx_start_function(prt, 0);
}

/* A protected pass over the started list: it gets the runtime and a result
 * to set, which pass_started returns (PARX_ERRRUN if the pass raised). */
typedef struct started_pass {
  px_runtime *rt;
  int result;
} started_pass;

static int pass_started(px_runtime *rt, lua_CFunction pass, int initial) {
  started_pass p = {rt, initial};
  if (px_runtime_protect(rt, pass, &p) != 0) return PARX_ERRRUN;
  return p.result;
}

/* Push the started list (an empty table when nothing was started) and
 * return its length. */
static int push_started(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  return (int)lua_objlen(L, -1);
}

/* Report the started tasks that finished (the first failure wins) and
 * drop them from the list, keeping the others in order. */
static int check_started_p(lua_State *L) {
  started_pass *a = lua_touserdata(L, 1);
  int n = push_started(L), list = lua_gettop(L), kept = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    px_future *f = px_future_test(L, -1);
    if (f && px_future_done(f)) {
      lua_pop(L, 1);
      int o = outcome(a->rt, f);
      if (o != PARX_OK && a->result == PARX_OK) a->result = o;
    } else {
      lua_rawseti(L, list, ++kept);
    }
  }
  for (int i = kept + 1; i <= n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, list, i);
  }
  return 0;
}

static int check_started(px_runtime *rt) { return pass_started(rt, check_started_p, PARX_OK); }

/* Fail the started chunks that still wait with the deadlock report; the
 * result says whether there was any. */
static int report_started_p(lua_State *L) {
  started_pass *a = lua_touserdata(L, 1);
  int n = push_started(L), list = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    px_future *f = px_future_test(L, -1);
    lua_pop(L, 1);
    if (f) {
      int r = px_host_report_deadlock(a->rt, f);
      if (r < 0) return luaL_error(L, "%s", px_runtime_last_error(a->rt));
      if (r > 0) a->result = 1;
    }
  }
  return 0;
}

static int report_started_deadlock(px_runtime *rt) {
  return pass_started(rt, report_started_p, 0);
}

int parx_run(parx_runtime *prt) {
  px_runtime *rt = RT(prt);
  if (!begin(rt)) return PARX_ERRPANIC;
  int r = drain(rt);
  if (r == PARX_ERRPANIC) return r;
  int s = check_started(rt);
  return r != PARX_OK ? r : s;
}

int parx_step(parx_runtime *prt, int nowait) {
  px_runtime *rt = RT(prt);
  if (!begin(rt)) return PARX_ERRPANIC;
  int more = px_host_step(rt, nowait);
  if (px_runtime_stopped(rt)) return stopped(rt);
  int s = check_started(rt);
  if (s != PARX_OK) return s;
  if (more < 0) {
    /* Quiescent with parked tasks: the chunks started through this API
     * that are still waiting fail with the deadlock report; background
     * tasks nobody waits for stay parked. */
    more = report_started_deadlock(rt);
  }
  return more;
}

int parx_backend_fd(parx_runtime *rt) { return px_host_backend_fd(RT(rt)); }

int parx_backend_timeout(parx_runtime *rt) { return px_host_backend_timeout(RT(rt)); }

/* ---- calling a Lua function as a task --------------------------------
 *
 * A parx_task is the future of a main-VM task that runs one of two
 * wrappers, both returning ok, results... or false, err[, message]:
 * on the main VM, xpcall(fn, ...) (the message: a string error with its
 * traceback); on a worker, pcall(join) of parx.spawn(fn, ...), so the
 * error value is the one join raises (the value given to error), not
 * re-raised by the main task. */

struct parx_task; /* is a px_future */
#define FUT(t) ((px_future *)(t))

static const char wrappers_src[] =
    "local spawn, pcall, xpcall, type = require('parx').spawn, pcall, xpcall, type\n"
    "local traceback, tb = debug.traceback\n"
    "local function handler(e)\n"
    "  tb = type(e) == 'string' and traceback(e, 2) or nil\n"
    "  return e\n"
    "end\n"
    "local function finish(ok, ...)\n"
    "  if ok then return true, ... end\n"
    "  local m = tb; tb = nil\n"
    "  return false, ..., m\n"
    "end\n"
    "return function(fn, ...) return finish(xpcall(fn, handler, ...)) end,\n"
    "  function(...) local t = spawn(...) return pcall(t.join, t) end\n";

/* Protected: push the wrapper for where (made once per runtime). */
static int push_wrapper_p(lua_State *L) {
  int where = (int)(intptr_t)lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.api.wrappers");
  if (!lua_istable(L, -1)) {
    if (luaL_loadbuffer(L, wrappers_src, sizeof wrappers_src - 1, "=parx_spawn") != 0)
      return lua_error(L);
    lua_call(L, 0, 2);
    lua_createtable(L, 2, 0);
    lua_insert(L, -3);
    lua_rawseti(L, -3, 2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "parx.api.wrappers");
  }
  lua_rawgeti(L, -1, where == PARX_ON_WORKER ? 2 : 1);
  return 1;
}

parx_task *parx_spawn(parx_runtime *prt, int nargs, int where) {
  px_runtime *rt = RT(prt);
  lua_State *L = px_runtime_state(rt);
  if (!begin(rt)) return NULL;
  if (nargs < 0 || lua_gettop(L) < nargs + 1) {
    px_runtime_set_error(rt, "parx_spawn: push the function, then its nargs arguments");
    return NULL;
  }
  const char *why = NULL;
  if (!lua_isfunction(L, -(nargs + 1))) why = "parx_spawn: the value under the arguments is not a function";
  else if (where != PARX_ON_MAIN && where != PARX_ON_WORKER) why = "parx_spawn: where is PARX_ON_MAIN or PARX_ON_WORKER";
  if (why) {
    px_runtime_set_error(rt, why);
    lua_pop(L, nargs + 1);
    return NULL;
  }
  if (px_cpcall(L, push_wrapper_p, (void *)(intptr_t)where, 1) != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not enough memory");
    lua_pop(L, nargs + 2);
    return NULL;
  }
  lua_insert(L, -(nargs + 2));
  return (parx_task *)px_host_start(rt, nargs + 1);
}

int parx_task_done(parx_task *t) { return t && px_future_done(FUT(t)); }

/* Protected: the error value at 2 as the last error (its __tostring for
 * a table; what it is for anything else). */
static int error_message_p(lua_State *L) {
  px_runtime *rt = lua_touserdata(L, 1);
  lua_settop(L, 2);
  if (lua_type(L, 2) == LUA_TSTRING || lua_type(L, 2) == LUA_TNUMBER)
    lua_pushvalue(L, 2);
  else if (!luaL_callmeta(L, 2, "__tostring") || !lua_isstring(L, -1))
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 2));
  px_runtime_set_error(rt, lua_tostring(L, -1));
  return 0;
}

int parx_task_results(parx_runtime *prt, parx_task *t) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  if (!px_future_done(FUT(t))) {
    px_runtime_set_error(rt, "parx_task_results: the task has not ended (parx_task_wait)");
    return PARX_ERRRUN;
  }
  int o = outcome(rt, FUT(t)), deadlocked;
  if (o == PARX_EXIT || o == PARX_ERRPANIC) return o;
  int n = px_host_results(rt, FUT(t), &deadlocked);
  if (n < 0) return PARX_ERRMEM;
  lua_State *L = px_runtime_state(rt);
  lua_remove(L, -n--); /* the task's own flag */
  if (o != PARX_OK) return o; /* cancelled, or the wrapper failed: its error */
  int ok = n > 0 && lua_toboolean(L, -n);
  lua_remove(L, -n--); /* the wrapper's flag */
  if (ok) {
    px_runtime_set_error(rt, NULL);
    return n;
  }
  /* err[, message] */
  if (n >= 2 && lua_type(L, -n + 1) == LUA_TSTRING) {
    px_runtime_set_error(rt, lua_tostring(L, -n + 1));
  } else {
    lua_pushcfunction(L, error_message_p);
    lua_pushlightuserdata(L, rt);
    lua_pushvalue(L, -n - 2);
    if (lua_pcall(L, 2, 0, 0) != 0) {
      px_runtime_set_error(rt, "(error object cannot be converted to a string)");
      lua_pop(L, 1);
    }
  }
  if (n == 0) lua_pushnil(L);
  else lua_pop(L, n - 1); /* the error value stays */
  return deadlocked ? PARX_ERRDEADLOCK : PARX_ERRRUN;
}

int parx_task_wait(parx_runtime *prt, parx_task *t) {
  px_runtime *rt = RT(prt);
  if (!begin(rt)) return PARX_ERRPANIC;
  if (px_host_wait(rt, FUT(t)) != 0) return PARX_ERRRUN;
  if (panicked(rt)) return PARX_ERRPANIC;
  if (!px_future_done(FUT(t))) return stopped(rt);
  int n = parx_task_results(prt, t);
  if (n >= 0) lua_pop(px_runtime_state(rt), n);
  else if (n == PARX_ERRRUN || n == PARX_ERRDEADLOCK) lua_pop(px_runtime_state(rt), 1);
  return n >= 0 ? PARX_OK : n;
}

void parx_task_release(parx_task *t) {
  if (t) px_future_release(FUT(t));
}

int parx_call(parx_runtime *prt, int nargs, int where) {
  parx_task *t = parx_spawn(prt, nargs, where);
  if (!t) return panicked(RT(prt)) ? PARX_ERRPANIC : PARX_ERRRUN;
  int r = parx_task_wait(prt, t);
  if (r == PARX_OK || r == PARX_ERRRUN || r == PARX_ERRDEADLOCK) {
    if (px_future_done(FUT(t))) r = parx_task_results(prt, t);
  }
  parx_task_release(t);
  return r;
}
