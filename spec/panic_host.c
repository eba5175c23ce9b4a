/*
 * panic_host.c -- the panic handler (runtime/core/state.c), checked from C
 * (spec/embed_spec.lua builds it against build/libparx.a and runs it).
 *
 * Every entry into Lua in parx is protected, so no script can cause a
 * panic; this program causes one on purpose, the way a bug would: a libuv
 * callback that raises a Lua error with no protected frame around it, on
 * the main VM (`main`) or on a worker (`worker`).  LuaJIT would print
 * "PANIC" and exit(); parx must instead report it, stop the runtime, return
 * PARX_ERRPANIC to the host, and let the host go on and close.  Uses the
 * core's internal headers: nothing in the public API can reach a loop.
 * Assertions are never compiled out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "parx.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static uv_timer_t timer;

/* A loop callback that breaks the rule: an unprotected error. */
static void raise_unprotected(uv_timer_t *t) {
  px_vm *vm = t->data;
  luaL_error(px_vm_state(vm), "raised outside any protected call");
}

/* Runs on the worker's thread (a control message): arm the timer there. */
static void arm_on_worker(lua_State *L, px_wait *w) {
  (void)L;
  px_vm *vm = w->vm;
  uv_timer_init(px_vm_loop(vm), &timer);
  timer.data = vm;
  uv_timer_start(&timer, raise_unprotected, 10, 0);
  free(w);
}

static int deliver_arm(lua_State *L, px_wait *w) {
  arm_on_worker(L, w);
  return 0;
}

int main(int argc, char **argv) {
  int on_worker = argc > 1 && strcmp(argv[1], "worker") == 0;
  parx_options o;
  parx_options_init(&o);
  o.workers = 2;
  parx_runtime *prt = parx_open(&o);
  CHECK(prt != NULL);
  px_runtime *rt = (px_runtime *)prt;
  if (on_worker) {
    /* Start the workers, then reach worker 1 through its inbox. */
    CHECK(parx_run_string(prt, "parx.spawn(function() end):join()", "=start", 1) == PARX_OK);
    px_vm *w = rt->workers[0];
    px_wait *msg = calloc(1, sizeof *msg);
    msg->vm = w;
    msg->deliver = deliver_arm;
    px_vm_post(w, msg);
  } else {
    uv_timer_init(px_vm_loop(rt->main), &timer);
    timer.data = rt->main;
    uv_timer_start(&timer, raise_unprotected, 10, 0);
  }
  /* The panic stops the runtime: this returns long before 30 s. */
  int r = parx_run_string(prt, "parx.sleep(30)", "=wait", 1);
  CHECK(r == PARX_ERRPANIC);
  CHECK(strstr(parx_last_error(prt), "PANIC") != NULL);
  CHECK(strstr(parx_last_error(prt), "raised outside any protected call") != NULL);
  /* Every later call says so, without touching the dead VM. */
  CHECK(parx_run_string(prt, "return 1", "=after", 1) == PARX_ERRPANIC);
  CHECK(parx_step(prt, 1) == PARX_ERRPANIC);
  printf("host survived the panic: %s\n", parx_last_error(prt));
  fflush(stdout);
  parx_close(prt);
  printf("host closed the runtime\n");
  fflush(stdout);
  /* The dead VM was abandoned, not freed (documented): skip the leak
   * check that would list it. */
  _exit(0);
}
