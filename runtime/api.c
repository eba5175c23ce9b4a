/* api.c -- the embedding API (parx.h) over the core. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
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
  return (parx_runtime *)px_runtime_new(o->workers, o->deadlock_check, o->trace);
}

void parx_close(parx_runtime *rt) {
  if (rt) px_runtime_close(RT(rt), -1);
}

int parx_close_timeout(parx_runtime *rt, int timeout_ms) {
  if (!rt) return 0;
  return px_runtime_close(RT(rt), timeout_ms < 0 ? 0 : timeout_ms);
}

lua_State *parx_state(parx_runtime *rt) { return RT(rt)->main->L; }

/* ---- protected bookkeeping -------------------------------------------
 *
 * Everything this file does on the main VM's lua_State runs inside
 * px_cpcall: a replaced standard global, a failing __tostring, a __gc
 * that errors during an allocation or running out of memory becomes the
 * last error and a result code, never a panic.  After a panic (state.c)
 * the main VM is dead and nothing here touches it: every call returns
 * PARX_ERRPANIC. */

static int panicked(px_runtime *rt) { return atomic_load(&rt->panicked); }

/* Run fn(L) protected with ud; on an error keep its message as the last
 * error.  Returns the Lua status. */
static int protect(px_runtime *rt, lua_CFunction fn, void *ud) {
  lua_State *L = rt->main->L;
  int top = lua_gettop(L);
  int status = px_cpcall(L, fn, ud, 0);
  if (status != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                             : status == LUA_ERRMEM ? "not enough memory"
                                                    : "error in the runtime's bookkeeping");
  }
  lua_settop(L, top);
  return status;
}

typedef struct reg_args {
  const char *name;
  lua_CFunction fn;
} reg_args;

static int register_p(lua_State *L) {
  reg_args *a = lua_touserdata(L, 1);
  lua_pushcfunction(L, a->fn);
  lua_setglobal(L, a->name);
  return 0;
}

int parx_register(parx_runtime *prt, const char *name, lua_CFunction fn) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  if (atomic_load(&rt->workers_started)) return PARX_ERRRUN;
  void *p = realloc(rt->cfuncs, sizeof *rt->cfuncs * (size_t)(rt->ncfuncs + 1));
  if (!p) return PARX_ERRMEM;
  rt->cfuncs = p;
  char *copy = strdup(name);
  if (!copy) return PARX_ERRMEM;
  reg_args a = {name, fn};
  if (protect(rt, register_p, &a) != 0) {
    free(copy);
    return PARX_ERRRUN;
  }
  rt->cfuncs[rt->ncfuncs].name = copy;
  rt->cfuncs[rt->ncfuncs].fn = fn;
  rt->ncfuncs++;
  return PARX_OK;
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
  protect(rt, set_args_p, &a);
}

const char *parx_last_error(parx_runtime *prt) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) {
    const char *m = atomic_load(&rt->panic_msg);
    if (m) return m;
  }
  const char *e = rt->last_error;
  return e ? e : "";
}

int parx_exit_code(parx_runtime *rt) { return atomic_load(&RT(rt)->exit_code); }

/* ---- running ------------------------------------------------------- */

/* The result of a run that the runtime stopped: os.exit, or a panic. */
static int stopped(px_runtime *rt) { return panicked(rt) ? PARX_ERRPANIC : PARX_EXIT; }

typedef struct start_args {
  px_runtime *rt;
  px_future *h;
} start_args;

/* Protected: ud, fn, args... -> a task of the main VM running fn(args). */
static int start_task_p(lua_State *L) {
  start_args *a = lua_touserdata(L, 1);
  lua_remove(L, 1);
  int nargs = lua_gettop(L) - 1;
  lua_State *co = lua_newthread(L);
  lua_insert(L, 1);
  lua_xmove(L, co, nargs + 1);
  /* co alone on this frame: px_task_new takes it (luaL_ref pops it). */
  px_task *t = px_task_new(a->rt->main, co, a->h);
  if (!t) return px_oom(L, "starting a task");
  a->h->task = t;
  return 0;
}

/* Start the function on top of main L (below it nargs arguments; all
 * popped) as a task.  Returns the task's handle (one ref), or NULL with
 * the last error set. */
static px_future *start_main_task(px_runtime *rt, int nargs) {
  px_vm *vm = rt->main;
  lua_State *L = vm->L;
  px_future *h = px_future_new(rt, 1);
  if (!h) {
    lua_pop(L, nargs + 1);
    px_runtime_set_error(rt, "not enough memory");
    return NULL;
  }
  h->vm = vm;
  h->state = PX_FUTURE_RUNNING;
  px_shared_retain(&h->hdr); /* the task's */
  start_args a = {rt, h};
  lua_pushcfunction(L, start_task_p);
  lua_insert(L, -(nargs + 2));
  lua_pushlightuserdata(L, &a);
  lua_insert(L, -(nargs + 2));
  int status = px_pcall(L, nargs + 2, 0);
  if (status != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not enough memory");
    lua_pop(L, 1);
    if (!h->task) px_shared_release(&h->hdr); /* the task's, never started */
    px_shared_release(&h->hdr);
    return NULL;
  }
  return h;
}

static int future_done(px_vm *vm, void *arg) {
  (void)vm;
  px_future *h = arg;
  return h->state >= PX_FUTURE_DONE;
}

/* Protected: fail the task of handle ud with the deadlock report. */
static int deadlock_report_p(lua_State *L) {
  px_future *h = lua_touserdata(L, 1);
  px_runtime *rt = h->rt;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "deadlock: all tasks are asleep, nothing can wake them:");
  px_sched_report(rt->main, &b);
  if (atomic_load(&rt->workers_started))
    for (int i = 0; i < rt->nworkers; i++) px_sched_report(rt->workers[i], &b);
  luaL_pushresult(&b);
  rt->deadlocked = 1;
  if (h->task) px_task_raise(h->task);
  return 0;
}

static int deadlock_report(px_runtime *rt, px_future *h) {
  return protect(rt, deadlock_report_p, h);
}

/* Drive the main VM until h is done; report deadlocks into h's task.
 * Returns 0, or PARX_ERRRUN when the report itself failed. */
static int drive_until(px_runtime *rt, px_future *h) {
  for (;;) {
    int quiet = px_vm_drive(rt->main, PX_DRIVE_UNTIL, future_done, h);
    if (atomic_load(&rt->exit_requested) || h->state >= PX_FUTURE_DONE) return 0;
    if (quiet) {
      if (!rt->deadlock_check) continue;
      if (deadlock_report(rt, h) != 0) return PARX_ERRRUN;
    }
  }
}

static int never_done(px_vm *vm, void *arg) {
  (void)vm;
  (void)arg;
  return 0;
}

static int drain(px_runtime *rt) {
  if (atomic_load(&rt->exit_requested)) return stopped(rt);
  px_vm_drive(rt->main, PX_DRIVE_UNTIL, never_done, NULL);
  return atomic_load(&rt->exit_requested) ? stopped(rt) : PARX_OK;
}

/* Protected: the error of finished task ud (its coroutine's first value)
 * as the last error. */
static int error_message_p(lua_State *L) {
  px_future *h = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->co_ref);
  lua_State *co = lua_tothread(L, -1);
  if (!co) return luaL_error(L, "(error object is a nil value)");
  lua_settop(co, 1); /* the error value (px_future_finish left it alone) */
  lua_xmove(co, L, 1);
  lua_pushvalue(L, -1);
  lua_xmove(L, co, 1); /* put it back for joiners */
  if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
    lua_tostring(L, -1);
  } else if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
    /* its __tostring */
  } else {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
  }
  px_runtime_set_error(h->rt, lua_tostring(L, -1));
  return 0;
}

/* The outcome of finished main-VM task h. */
static int outcome(px_runtime *rt, px_future *h) {
  if (atomic_load(&rt->exit_requested)) return stopped(rt);
  if (h->state == PX_FUTURE_DONE) return PARX_OK;
  if (h->state == PX_FUTURE_CANCELLED) {
    px_runtime_set_error(rt, "the main task was cancelled");
    return PARX_ERRRUN;
  }
  if (protect(rt, error_message_p, h) != 0) {
    /* Its __tostring failed: say what the value was. */
    px_runtime_set_error(rt, "(error object cannot be converted to a string)");
  }
  h->retrieved = 1;
  int dead = rt->deadlocked;
  rt->deadlocked = 0;
  return dead ? PARX_ERRDEADLOCK : PARX_ERRRUN;
}

static int run_loaded(px_runtime *rt, int nargs, int do_drain) {
  px_future *h = start_main_task(rt, nargs);
  if (!h) return PARX_ERRMEM;
  int r = drive_until(rt, h);
  if (r == PARX_OK) {
    if (panicked(rt)) r = PARX_ERRPANIC;
    else if (h->state >= PX_FUTURE_DONE) r = outcome(rt, h);
    else r = atomic_load(&rt->exit_requested) ? stopped(rt) : PARX_ERRRUN;
  }
  px_shared_release(&h->hdr);
  if (r == PARX_OK && do_drain) r = drain(rt);
  return r;
}

/* Compile code onto the main VM's stack; PARX_ERRSYNTAX with the message
 * kept as the last error when it does not compile.  (luaL_loadbuffer is
 * protected itself.) */
static int load_string(px_runtime *rt, const char *code, const char *chunkname) {
  lua_State *L = rt->main->L;
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
  if (panicked(rt)) return PARX_ERRPANIC;
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
  if (panicked(rt)) return PARX_ERRPANIC;
  lua_State *L = rt->main->L;
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

/* Keep h in a registry list to report its failure in parx_step. */
static int keep_started_p(lua_State *L) {
  px_future *h = lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "parx.started");
  }
  px_shared_retain(&h->hdr);
  px_shared_push(L, &h->hdr);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  return 0;
}

int parx_start_function(parx_runtime *prt, int nargs) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  px_future *h = start_main_task(rt, nargs);
  if (!h) return PARX_ERRMEM;
  int r = protect(rt, keep_started_p, h) != 0 ? PARX_ERRMEM : PARX_OK;
  px_shared_release(&h->hdr);
  return r;
}

/* Tasks started without driving; their failures surface in parx_step. */
int parx_start_string(parx_runtime *prt, const char *code, const char *chunkname) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  int r = load_string(rt, code, chunkname);
  return r != PARX_OK ? r : parx_start_function(prt, 0);
}

typedef struct check_args {
  px_runtime *rt;
  int result;
} check_args;

/* Protected: report the started tasks that finished (the first failure
 * wins) and drop them from the list, keeping the others in order. */
static int check_started_p(lua_State *L) {
  check_args *a = lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  if (!lua_istable(L, -1)) return 0;
  int list = lua_gettop(L);
  int n = (int)lua_objlen(L, list), kept = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    px_future *h = (px_future *)px_shared_test(L, -1, &px_future_type);
    if (h && h->state >= PX_FUTURE_DONE) {
      lua_pop(L, 1);
      int o = outcome(a->rt, h);
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

static int check_started(px_runtime *rt) {
  check_args a = {rt, PARX_OK};
  if (protect(rt, check_started_p, &a) != 0) return PARX_ERRRUN;
  return a.result;
}

typedef struct report_args {
  px_runtime *rt;
  int any;
} report_args;

/* Protected: fail the started chunks that still wait with the deadlock
 * report. */
static int report_started_p(lua_State *L) {
  report_args *a = lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    px_future *h = (px_future *)px_shared_test(L, -1, &px_future_type);
    lua_pop(L, 1);
    if (h && h->state < PX_FUTURE_DONE && h->task) {
      lua_pushcfunction(L, deadlock_report_p);
      lua_pushlightuserdata(L, h);
      lua_call(L, 1, 0);
      a->any = 1;
    }
  }
  return 0;
}

static int report_started_deadlock(px_runtime *rt) {
  if (!rt->deadlock_check) return 0;
  report_args a = {rt, 0};
  if (protect(rt, report_started_p, &a) != 0) return PARX_ERRRUN;
  return a.any;
}

int parx_run(parx_runtime *prt) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  int r = drain(rt);
  if (r == PARX_ERRPANIC) return r;
  int s = check_started(rt);
  return r != PARX_OK ? r : s;
}

int parx_step(parx_runtime *prt, int nowait) {
  px_runtime *rt = RT(prt);
  if (panicked(rt)) return PARX_ERRPANIC;
  int more = px_vm_drive(rt->main, nowait ? PX_DRIVE_STEP_NOWAIT : PX_DRIVE_STEP, NULL, NULL);
  if (atomic_load(&rt->exit_requested)) return stopped(rt);
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

int parx_backend_fd(parx_runtime *rt) { return uv_backend_fd(&RT(rt)->main->loop); }

int parx_backend_timeout(parx_runtime *prt) {
  px_vm *vm = RT(prt)->main;
  if (vm->ready_head || vm->wakes_head || __atomic_load_n(&vm->inbox_head, __ATOMIC_SEQ_CST)) return 0;
  uv_ref((uv_handle_t *)&vm->async); /* posts must wake the host's poll */
  int t = uv_backend_timeout(&vm->loop);
  uv_unref((uv_handle_t *)&vm->async);
  return t;
}
