/* state.c -- a VM's lua_State: standard libraries, the C modules (the
 * list the runtime was opened with) and the bytecode of the Lua layer
 * preloaded, host-registered functions, and the global `parx`; the panic
 * handler.  The protected entry into Lua and px_vm_of are enter.c's, below
 * everything that opens libraries here. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "core.h"
#include "luamods.h"

static int load_luamod(lua_State *L) {
  const px_luamod *m = lua_touserdata(L, lua_upvalueindex(1));
  char chunkname[128];
  snprintf(chunkname, sizeof chunkname, "=[parx] %s", m->name);
  if (luaL_loadbuffer(L, (const char *)m->code, m->size, chunkname))
    return lua_error(L);
  lua_pushstring(L, m->name);
  /* Called by require, inside the caller's protected frame: an error in
   * the module's body is require's error. */
  lua_call(L, 1, 1);
  return 1;
}

static int cancelled_tostring(lua_State *L) {
  lua_pushliteral(L, "parx: task was cancelled");
  return 1;
}

/* The error a cancelled task unwinds with (parx.CANCELLED): made here, by
 * the core that raises it, before any Lua runs; one per VM, compared by
 * identity (px_future_finish, the scheduler).  The task module hands it
 * to Lua as parx.c.task.CANCELLED. */
static void make_cancelled(lua_State *L, px_vm *vm) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, cancelled_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  vm->cancelled_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Run protected (px_cpcall), so the calls below need no frame of their
 * own: an error in them (out of memory) fails the VM's start-up. */
static int setup(lua_State *L) {
  px_vm *vm = lua_touserdata(L, 1);
  luaL_openlibs(L);

  px_vm_bind(L, vm);
  make_cancelled(L, vm);
  lua_pushcfunction(L, vm->open_libs); /* what the layers above add (vm.c): after
                                        * px_vm_of works */
  lua_call(L, 0, 0);

  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  /* The C modules the faces listed (runtime/modules.c): the core knows
   * none of them by name. */
  for (const px_module *m = vm->rt->modules; m && m->name; m++) {
    lua_pushcfunction(L, m->open);
    lua_setfield(L, -2, m->name);
  }
  for (const px_luamod *m = px_luamods; m->name; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, load_luamod, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);

  /* Registered before any code ran (parx_register), so no lock: the
   * list no longer changes once workers exist. */
  px_runtime *rt = vm->rt;
  for (int i = 0; i < rt->ncfuncs; i++) {
    if (rt->cfuncs[i].lib) {
      luaL_register(L, rt->cfuncs[i].name, rt->cfuncs[i].lib);
      lua_pop(L, 1);
      continue;
    }
    lua_pushcfunction(L, rt->cfuncs[i].fn);
    lua_setglobal(L, rt->cfuncs[i].name);
  }

  lua_getglobal(L, "require");
  lua_pushstring(L, "parx");
  lua_call(L, 1, 1);
  lua_setglobal(L, "parx");
  return 0;
}

/* ---- panics ----------------------------------------------------------
 *
 * LuaJIT calls the panic function when an error is raised with no LuaJIT
 * frame on the C stack that could catch it (a bare lua_call or an
 * allocation whose GC step runs an erroring __gc, from C code outside any
 * lua_pcall or lua_resume), and calls exit(EXIT_FAILURE) when it returns.
 * Every entry into Lua is meant to be protected (px_pcall), so a panic is a
 * bug; this handler makes it an error of the runtime instead of a silent
 * exit of the host process:
 *
 *   - it writes "parx: PANIC: ..." on stderr and records the message as the
 *     runtime's error (px_runtime_panic), which stops the runtime: the API
 *     calls then return PARX_ERRPANIC;
 *   - it marks the VM dead: its lua_State is left inconsistent by the
 *     aborted throw (stack, C frame chain, GC state), so nothing touches it
 *     again, not even lua_close; a dead VM's state, loop and tasks are
 *     abandoned (leaked) at close;
 *   - it siglongjmps to the innermost recovery point of the thread
 *     (px_rescue_push: px_vm_drive, the API's entry points), which returns
 *     as if the VM had stopped.
 *
 * With no recovery point on the thread (a host's own unprotected call on
 * parx_state, outside any parx call) there is nowhere safe to go: the
 * handler reports and returns, and LuaJIT ends the process as it always
 * does.  The recovery points are per thread (thread-local: the panic
 * function receives no context but the lua_State). */
static _Thread_local px_rescue *rescue_top;

void px_rescue_push(px_rescue *r) {
  r->prev = rescue_top;
  rescue_top = r;
}

void px_rescue_pop(px_rescue *r) { rescue_top = r->prev; }

static int on_panic(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  /* Read the message without converting it: a conversion allocates, and
   * an allocation may raise again. */
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  char where[32], line[1024];
  if (vm && vm->id > 0) snprintf(where, sizeof where, "worker %d", vm->id);
  else snprintf(where, sizeof where, "the main VM");
  snprintf(line, sizeof line, "PANIC: unprotected error in %s: %s", where,
           msg ? msg : "(error object is not a string)");
  fprintf(stderr, "parx: %s\n", line);
  fflush(stderr);
  if (!vm) return 0;
  vm->dead = 1;
  px_runtime_panic(vm->rt, line);
  px_rescue *r = rescue_top;
  if (!r) return 0; /* LuaJIT exits; see above */
  rescue_top = r->prev;
  siglongjmp(r->buf, 1);
}

/* Returns 0, or a negative error code (the message, if any, is the
 * runtime's error). */
int px_state_setup(px_vm *vm, lua_CFunction open) {
  vm->open_libs = open;
  lua_State *L = luaL_newstate();
  if (!L) return UV_ENOMEM;
  vm->L = L;
  lua_atpanic(L, on_panic);
  int status = px_cpcall(L, setup, vm, 0);
  if (status != 0) {
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "VM start-up failed";
    px_runtime_set_error(vm->rt, msg);
    if (getenv("PARX_DEBUG")) fprintf(stderr, "parx: VM start-up failed: %s\n", msg);
    lua_close(L);
    vm->L = NULL;
    return status == LUA_ERRMEM ? UV_ENOMEM : UV_EINVAL;
  }
  return 0;
}
