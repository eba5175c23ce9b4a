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
  if (rt) px_runtime_free(RT(rt));
}

lua_State *parx_state(parx_runtime *rt) { return RT(rt)->main->L; }

int parx_register(parx_runtime *prt, const char *name, lua_CFunction fn) {
  px_runtime *rt = RT(prt);
  if (atomic_load(&rt->workers_started)) return PARX_ERRRUN;
  void *p = realloc(rt->cfuncs, sizeof *rt->cfuncs * (size_t)(rt->ncfuncs + 1));
  if (!p) return PARX_ERRMEM;
  rt->cfuncs = p;
  rt->cfuncs[rt->ncfuncs].name = strdup(name);
  rt->cfuncs[rt->ncfuncs].fn = fn;
  rt->ncfuncs++;
  lua_pushcfunction(rt->main->L, fn);
  lua_setglobal(rt->main->L, name);
  return PARX_OK;
}

void parx_set_args(parx_runtime *prt, int argc, char **argv, int script) {
  lua_State *L = RT(prt)->main->L;
  lua_createtable(L, argc - script > 0 ? argc - script : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

const char *parx_last_error(parx_runtime *rt) {
  const char *e = RT(rt)->last_error;
  return e ? e : "";
}

int parx_exit_code(parx_runtime *rt) { return atomic_load(&RT(rt)->exit_code); }

/* ---- running ------------------------------------------------------- */

/* Start the function on top of main L (popped) with nargs arguments below
 * it... here: with no arguments.  Returns the task's handle (one ref). */
static px_handle *start_main_task(px_runtime *rt, int nargs) {
  px_vm *vm = rt->main;
  lua_State *L = vm->L;
  px_handle *h = px_handle_new(rt, 1);
  if (!h) {
    lua_pop(L, nargs + 1);
    return NULL;
  }
  lua_State *co = lua_newthread(L);
  lua_insert(L, -(nargs + 2));
  lua_xmove(L, co, nargs + 1);
  h->vm = vm;
  h->state = PX_H_RUNNING;
  px_shared_retain(&h->hdr); /* the task's */
  px_task *t = px_task_new(vm, co, h);
  if (!t) {
    px_shared_release(&h->hdr);
    px_shared_release(&h->hdr);
    return NULL;
  }
  h->task = t;
  return h;
}

static int handle_done(px_vm *vm, void *arg) {
  (void)vm;
  px_handle *h = arg;
  return h->state >= PX_H_DONE;
}

static void deadlock_report(px_runtime *rt, px_handle *h) {
  lua_State *L = rt->main->L;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "deadlock: all tasks are asleep, nothing can wake them:");
  px_sched_report(rt->main, &b);
  if (atomic_load(&rt->workers_started))
    for (int i = 0; i < rt->nworkers; i++) px_sched_report(rt->workers[i], &b);
  luaL_pushresult(&b);
  rt->deadlocked = 1;
  if (h->task) px_task_raise(h->task);
  else lua_pop(L, 1);
}

/* Drive the main VM until h is done; report deadlocks into h's task. */
static void drive_until(px_runtime *rt, px_handle *h) {
  for (;;) {
    int quiet = px_vm_drive(rt->main, PX_DRIVE_UNTIL, handle_done, h);
    if (atomic_load(&rt->exit_requested) || h->state >= PX_H_DONE) return;
    if (quiet) {
      if (!rt->deadlock_check) continue;
      deadlock_report(rt, h);
    }
  }
}

static int never_done(px_vm *vm, void *arg) {
  (void)vm;
  (void)arg;
  return 0;
}

static int drain(px_runtime *rt) {
  if (atomic_load(&rt->exit_requested)) return PARX_EXIT;
  px_vm_drive(rt->main, PX_DRIVE_UNTIL, never_done, NULL);
  return atomic_load(&rt->exit_requested) ? PARX_EXIT : PARX_OK;
}

/* The outcome of finished main-VM task h. */
static int outcome(px_runtime *rt, px_handle *h) {
  if (atomic_load(&rt->exit_requested)) return PARX_EXIT;
  if (h->state == PX_H_DONE) return PARX_OK;
  lua_State *L = rt->main->L;
  if (h->state == PX_H_CANCELLED) {
    px_runtime_set_error(rt, "the main task was cancelled");
    return PARX_ERRRUN;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->co_ref);
  lua_State *co = lua_tothread(L, -1);
  const char *msg = co ? lua_tostring(co, 1) : NULL;
  if (msg) {
    px_runtime_set_error(rt, msg);
  } else if (co && luaL_callmeta(co, 1, "__tostring")) {
    px_runtime_set_error(rt, lua_tostring(co, -1));
    lua_pop(co, 1);
  } else {
    char buf[96];
    snprintf(buf, sizeof buf, "(error object is a %s value)", co ? luaL_typename(co, 1) : "nil");
    px_runtime_set_error(rt, buf);
  }
  lua_pop(L, 1);
  h->retrieved = 1;
  int dead = rt->deadlocked;
  rt->deadlocked = 0;
  return dead ? PARX_ERRDEADLOCK : PARX_ERRRUN;
}

static int run_loaded(px_runtime *rt, int nargs, int do_drain) {
  px_handle *h = start_main_task(rt, nargs);
  if (!h) {
    px_runtime_set_error(rt, "not enough memory");
    return PARX_ERRMEM;
  }
  drive_until(rt, h);
  int r = h->state >= PX_H_DONE ? outcome(rt, h) : (atomic_load(&rt->exit_requested) ? PARX_EXIT : PARX_ERRRUN);
  px_shared_release(&h->hdr);
  if (r == PARX_OK && do_drain) r = drain(rt);
  return r;
}

/* Compile code onto the main VM's stack; PARX_ERRSYNTAX with the message
 * kept as the last error when it does not compile. */
static int load_string(px_runtime *rt, const char *code, const char *chunkname) {
  lua_State *L = rt->main->L;
  if (luaL_loadbuffer(L, code, strlen(code), chunkname ? chunkname : code) != 0) {
    px_runtime_set_error(rt, lua_tostring(L, -1));
    lua_pop(L, 1);
    return PARX_ERRSYNTAX;
  }
  return PARX_OK;
}

int parx_run_string(parx_runtime *prt, const char *code, const char *chunkname, int do_drain) {
  px_runtime *rt = RT(prt);
  int r = load_string(rt, code, chunkname);
  return r != PARX_OK ? r : run_loaded(rt, 0, do_drain);
}

int parx_run_file(parx_runtime *prt, const char *path, int do_drain) {
  px_runtime *rt = RT(prt);
  lua_State *L = rt->main->L;
  int st = luaL_loadfile(L, path);
  if (st != 0) {
    px_runtime_set_error(rt, lua_tostring(L, -1));
    lua_pop(L, 1);
    return st == LUA_ERRFILE ? PARX_ERRFILE : st == LUA_ERRMEM ? PARX_ERRMEM : PARX_ERRSYNTAX;
  }
  /* The script's arguments (arg[1..n]) are also its `...`. */
  int nargs = 0;
  lua_getglobal(L, "arg");
  if (lua_istable(L, -1)) {
    int n = (int)lua_objlen(L, -1);
    luaL_checkstack(L, n + 2, "too many arguments");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -1 - (i - 1), i);
    nargs = n;
  }
  lua_remove(L, -(nargs + 1));
  return run_loaded(rt, nargs, do_drain);
}

/* Tasks started without driving; their failures surface in parx_step. */
int parx_start_string(parx_runtime *prt, const char *code, const char *chunkname) {
  px_runtime *rt = RT(prt);
  lua_State *L = rt->main->L;
  int r = load_string(rt, code, chunkname);
  if (r != PARX_OK) return r;
  px_handle *h = start_main_task(rt, 0);
  if (!h) return PARX_ERRMEM;
  /* Keep the handle in a registry list to report its failure later. */
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "parx.started");
  }
  px_shared_push(L, &h->hdr);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  lua_pop(L, 1);
  return PARX_OK;
}

static int check_started(px_runtime *rt) {
  lua_State *L = rt->main->L;
  int r = PARX_OK;
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return PARX_OK;
  }
  int n = (int)lua_objlen(L, -1);
  for (int i = n; i >= 1; i--) {
    lua_rawgeti(L, -1, i);
    px_handle *h = (px_handle *)px_shared_test(L, -1, &px_handle_type);
    lua_pop(L, 1);
    if (h && h->state >= PX_H_DONE) {
      int o = outcome(rt, h);
      if (o != PARX_OK && r == PARX_OK) r = o;
      /* remove entry i */
      lua_getglobal(L, "table");
      lua_getfield(L, -1, "remove");
      lua_pushvalue(L, -3);
      lua_pushinteger(L, i);
      lua_call(L, 2, 0);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return r;
}

static int report_started_deadlock(px_runtime *rt) {
  if (!rt->deadlock_check) return 0;
  lua_State *L = rt->main->L;
  int any = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "parx.started");
  int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    px_handle *h = (px_handle *)px_shared_test(L, -1, &px_handle_type);
    lua_pop(L, 1);
    if (h && h->state < PX_H_DONE && h->task) {
      deadlock_report(rt, h);
      any = 1;
    }
  }
  lua_pop(L, 1);
  return any;
}

int parx_run(parx_runtime *prt) {
  px_runtime *rt = RT(prt);
  int r = drain(rt);
  int s = check_started(rt);
  return r != PARX_OK ? r : s;
}

int parx_step(parx_runtime *prt, int nowait) {
  px_runtime *rt = RT(prt);
  int more = px_vm_drive(rt->main, nowait ? PX_DRIVE_STEP_NOWAIT : PX_DRIVE_STEP, NULL, NULL);
  if (atomic_load(&rt->exit_requested)) return PARX_EXIT;
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
