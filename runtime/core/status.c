/* status.c -- what the runtime says about itself: its last error, an
 * exit requested by os.exit, a panic (state.c), and the facts modules and
 * faces read (worker count, main VM).  At the bottom of the core: the
 * panic handler and every layer above report here, and nothing here calls
 * back up (a stop pokes the main VM's loop directly). */
#include <stdlib.h>
#include <string.h>

#include "core.h"

int px_runtime_workers(px_runtime *rt) { return rt->nworkers; }
px_vm *px_runtime_main(px_runtime *rt) { return rt->main; }
lua_State *px_runtime_state(px_runtime *rt) { return rt->main->L; }

void px_runtime_set_error(px_runtime *rt, const char *msg) {
  free(rt->last_error);
  rt->last_error = strdup(msg ? msg : "");
}

const char *px_runtime_last_error(px_runtime *rt) {
  if (atomic_load(&rt->panicked)) {
    const char *m = atomic_load(&rt->panic_msg);
    if (m) return m;
  }
  return rt->last_error ? rt->last_error : "";
}

int px_runtime_panicked(px_runtime *rt) { return atomic_load(&rt->panicked); }
int px_runtime_stopped(px_runtime *rt) { return atomic_load(&rt->exit_requested); }
int px_runtime_exit_code(px_runtime *rt) { return atomic_load(&rt->exit_code); }

const char px_exit_marker = 0;

void px_runtime_exit(px_runtime *rt, int code) {
  atomic_store(&rt->exit_code, code);
  atomic_store(&rt->exit_requested, 1);
  uv_async_send(&rt->main->async); /* its drive returns */
}

/* A VM panicked (state.c, any thread): keep the first message, stop the
 * runtime as os.exit would (the main VM's drive returns at once), and let
 * the API report PARX_ERRPANIC. */
void px_runtime_panic(px_runtime *rt, const char *msg) {
  char *copy = strdup(msg ? msg : "PANIC");
  char *expect = NULL;
  if (!atomic_compare_exchange_strong(&rt->panic_msg, &expect, copy)) free(copy);
  atomic_store(&rt->panicked, 1);
  if (!atomic_exchange(&rt->exit_requested, 1)) atomic_store(&rt->exit_code, 1);
  if (rt->main && !rt->main->dead) uv_async_send(&rt->main->async);
}
