/*
 * host.c -- a host program embedding libparx.
 *
 * Build (from the repository):   make embed-host   (build/embed-host)
 * or against an installed parx:  cc host.c $(pkg-config --cflags --libs parx)
 *
 * It shows the whole embedding API: open a runtime, register a C function
 * every VM gets, run a string to completion, read a global back, drive a
 * task from the host's own loop with parx_step and parx_backend_fd, get an
 * error message, and close.  spec/embed_spec.lua runs it and checks what it
 * prints.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <parx.h>

/* host_add(a, b): a C function the host gives to every VM. */
static int host_add(lua_State *L) {
  lua_Number a = luaL_checknumber(L, 1);
  lua_Number b = luaL_checknumber(L, 2);
  lua_pushnumber(L, a + b);
  return 1;
}

/* `host exit`: os.exit while a worker runs a JIT-compiled loop.  parx_run_*
 * returns PARX_EXIT at once; the worker cannot be stopped, so the host
 * closes with a timeout, which abandons it, and ends its process. */
static int exit_while_busy(void) {
  parx_options opts;
  parx_options_init(&opts);
  opts.workers = 2;
  parx_runtime *rt = parx_open(&opts);
  if (rt == NULL) return 1;
  int r = parx_run_string(rt,
      "parx.spawn(function() local x = 0 for i = 1, 1e12 do x = x + i end return x end)\n"
      "parx.sleep(0.1)\n"
      "os.exit(5)", "=host-exit", 1);
  printf("run result %s, exit code %d\n", r == PARX_EXIT ? "PARX_EXIT" : "other",
         parx_exit_code(rt));
  int abandoned = parx_close_timeout(rt, 100);
  printf("close: %s\n", abandoned ? "worker abandoned" : "all joined");
  fflush(stdout);
  /* Abandoned workers still run: end the process without exit()'s
   * handlers (the runtime's memory stays allocated, as documented). */
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "exit") == 0) return exit_while_busy();
  parx_options opts;
  parx_options_init(&opts);
  opts.workers = 2;
  parx_runtime *rt = parx_open(&opts);
  if (rt == NULL) {
    fprintf(stderr, "host: parx_open failed\n");
    return 1;
  }
  parx_register(rt, "host_add", host_add);

  /* 1. Run a string to completion. */
  int r = parx_run_string(rt, "answer = host_add(40, 2)\n"
                              "print('lua says', answer)", "=host", 1);
  if (r != PARX_OK) {
    fprintf(stderr, "host: run failed: %s\n", parx_last_error(rt));
    return 1;
  }

  /* 2. Read the result back through the main VM's state. */
  lua_State *L = parx_state(rt);
  lua_getglobal(L, "answer");
  printf("host reads answer = %d\n", (int)lua_tointeger(L, -1));
  lua_pop(L, 1);

  /* 3. Start a task and drive it from the host's own loop. */
  r = parx_start_string(rt, "steps_done = 0\n"
                            "for i = 1, 3 do steps_done = i end", "=host-task");
  if (r != PARX_OK) {
    fprintf(stderr, "host: start failed: %s\n", parx_last_error(rt));
    return 1;
  }
  int spins = 0;
  while ((r = parx_step(rt, 1)) > 0 && spins++ < 100000) {
    struct pollfd fd = {.fd = parx_backend_fd(rt), .events = POLLIN};
    if (fd.fd >= 0) poll(&fd, 1, parx_backend_timeout(rt));
  }
  if (r < 0) {
    fprintf(stderr, "host: step failed: %s\n", parx_last_error(rt));
    return 1;
  }
  lua_getglobal(L, "steps_done");
  printf("host drove the task: steps_done = %d\n", (int)lua_tointeger(L, -1));
  lua_pop(L, 1);

  /* 4. Errors come back as a result code and a message. */
  r = parx_run_string(rt, "error('raised on purpose')", "=host-error", 1);
  printf("error result %s: %s\n", r == PARX_ERRRUN ? "PARX_ERRRUN" : "other",
         parx_last_error(rt));
  r = parx_run_string(rt, "this is not lua", "=host-syntax", 1);
  printf("syntax result %s\n", r == PARX_ERRSYNTAX ? "PARX_ERRSYNTAX" : "other");
  /* A run that succeeds clears the last error. */
  r = parx_run_string(rt, "local ok = true", "=host-ok", 1);
  printf("after success: result %d, last error \"%s\"\n", r, parx_last_error(rt));

  /* 5. parx_backend_timeout counts from now: a host that polls for the
   * time it says and asks again sees it shrink to 0 as the timer comes
   * due (libuv's cached clock alone would repeat the first answer). */
  r = parx_start_string(rt, "parx.sleep(0.05)", "=host-timer");
  parx_step(rt, 1);
  int first = parx_backend_timeout(rt), last = first, rounds = 0;
  while (last > 0 && rounds++ < 100) {
    struct timespec ms = {0, 10 * 1000000L};
    nanosleep(&ms, NULL);
    last = parx_backend_timeout(rt);
  }
  printf("timeout from now: %s\n", first > 0 && last == 0 ? "shrinks to 0" : "stuck");
  while (parx_step(rt, 0) > 0) {
  }

  parx_close(rt);
  printf("host closed the runtime\n");
  return 0;
}
