/*
 * host.c -- a host program embedding libparx.
 *
 * Build (from the repository):   make embed-host   (build/embed-host)
 * or against an installed parx:  cc host.c $(pkg-config --cflags --libs parx)
 *
 * It shows the whole embedding API: open a runtime, register a C function
 * and a C module every VM gets, run a string to completion, read a global
 * back, drive a task from the host's own loop with parx_step and
 * parx_backend_fd, get an error message, call Lua functions as tasks on
 * the main VM and on workers (parx_call, parx_spawn), pass tables through
 * a host channel, run again after os.exit, and close.  spec/embed_spec.lua
 * runs it and checks what it prints.  poll_host.c and glib_host.c are
 * hosts built around their own event loops.
 */
#include <poll.h>
#include <pthread.h>
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

/* hostlib: a C module (luaL_Reg) every VM gets, workers included. */
static int hostlib_twice(lua_State *L) {
  lua_pushnumber(L, 2 * luaL_checknumber(L, 1));
  return 1;
}
static int hostlib_name(lua_State *L) {
  lua_pushliteral(L, "hostlib");
  return 1;
}
static const luaL_Reg hostlib[] = {{"twice", hostlib_twice}, {"name", hostlib_name}, {NULL, NULL}};

/* Push the global function `name` of the main VM. */
static void push_global(parx_runtime *rt, const char *name) {
  lua_getglobal(parx_state(rt), name);
}

/* 6-11: the calls a host with its own work needs. */
static int tasks_and_values(parx_runtime *rt) {
  lua_State *L = parx_state(rt);
  int r = parx_run_string(rt,
      "function stats(list)\n"
      "  local sum = 0\n"
      "  for _, x in ipairs(list) do sum = sum + hostlib.twice(x) end\n"
      "  return {n = #list, sum = sum, module = require('hostlib').name()}, 'second'\n"
      "end\n"
      "function fails(why) error({why = why}) end\n"
      "function slow(s) parx.sleep(s) return 'slept' end\n", "=host-funcs", 1);
  if (r != PARX_OK) return fprintf(stderr, "host: %s\n", parx_last_error(rt)), 1;

  /* 6. parx_call on a worker: a table in, a table and a string out. */
  push_global(rt, "stats");
  lua_createtable(L, 3, 0);
  for (int i = 1; i <= 3; i++) {
    lua_pushnumber(L, i * 10);
    lua_rawseti(L, -2, i);
  }
  int n = parx_call(rt, 1, PARX_ON_WORKER);
  if (n != 2) return fprintf(stderr, "host: parx_call: %d %s\n", n, parx_last_error(rt)), 1;
  lua_getfield(L, -2, "n");
  lua_getfield(L, -3, "sum");
  lua_getfield(L, -4, "module");
  printf("parx_call on a worker: n=%d sum=%d module=%s, then %s\n", (int)lua_tointeger(L, -3),
         (int)lua_tointeger(L, -2), lua_tostring(L, -1), lua_tostring(L, -4));
  lua_pop(L, 5);

  /* 7. Its error comes back as PARX_ERRRUN with the error value pushed. */
  push_global(rt, "fails");
  lua_pushliteral(L, "on purpose");
  r = parx_call(rt, 1, PARX_ON_WORKER);
  lua_getfield(L, -1, "why");
  printf("parx_call error: %s, error value .why = %s\n", r == PARX_ERRRUN ? "PARX_ERRRUN" : "other",
         lua_tostring(L, -1));
  lua_pop(L, 2);

  /* 8. parx_spawn: a handle the host's loop polls between steps. */
  push_global(rt, "slow");
  lua_pushnumber(L, 0.05);
  parx_task *t = parx_spawn(rt, 1, PARX_ON_MAIN);
  if (!t) return fprintf(stderr, "host: parx_spawn: %s\n", parx_last_error(rt)), 1;
  int polls = 0;
  while (!parx_task_done(t) && parx_step(rt, 0) >= 0) polls++;
  n = parx_task_results(rt, t);
  printf("parx_spawn polled %s: %d result, %s\n", polls > 0 ? "between steps" : "never",
         n, n == 1 ? lua_tostring(L, -1) : parx_last_error(rt));
  if (n > 0) lua_pop(L, n);
  parx_task_release(t);

  /* 9. Tables through a host channel, both ways. */
  parx_channel *ch = parx_channel_new(-1), *back = parx_channel_new(-1);
  parx_channel_push(L, ch);
  lua_setglobal(L, "to_host");
  parx_channel_push(L, back);
  lua_setglobal(L, "from_host");
  lua_newtable(L);
  lua_pushliteral(L, "from C");
  lua_setfield(L, -2, "who");
  parx_channel_send_lua(back, L, -1);
  lua_pop(L, 1);
  r = parx_run_string(rt,
      "parx.spawn(function(out, inbox)\n"
      "  local got = inbox:recv()\n"
      "  out:send({who = got.who, list = {1, 2, {deep = true}}})\n"
      "end, to_host, from_host):join()", "=host-chan", 1);
  if (r != PARX_OK) return fprintf(stderr, "host: %s\n", parx_last_error(rt)), 1;
  if (parx_channel_try_recv_lua(ch, L) != PARX_CHAN_OK) return fprintf(stderr, "host: no table\n"), 1;
  lua_getfield(L, -1, "who");
  lua_getfield(L, -2, "list");
  lua_rawgeti(L, -1, 3);
  lua_getfield(L, -1, "deep");
  printf("host channel: a table back, who=%s, #list=%d, list[3].deep=%s\n", lua_tostring(L, -4),
         (int)lua_objlen(L, -3), lua_toboolean(L, -1) ? "true" : "false");
  lua_pop(L, 5);
  lua_newthread(L);
  r = parx_channel_try_send_lua(ch, L, -1);
  printf("a coroutine: %s (%s)\n", r == PARX_CHAN_ERRVALUE ? "PARX_CHAN_ERRVALUE" : "other",
         lua_tostring(L, -1));
  lua_pop(L, 2);
  parx_channel_release(ch);
  parx_channel_release(back);

  /* 10. os.exit ends a run with PARX_EXIT once; the next run runs. */
  r = parx_run_string(rt, "os.exit(3)", "=host-exit3", 1);
  int code = parx_exit_code(rt);
  int again = parx_run_string(rt, "after_exit = hostlib.twice(21)", "=host-again", 1);
  lua_getglobal(L, "after_exit");
  printf("os.exit: %s (code %d), then %s with after_exit = %d\n", r == PARX_EXIT ? "PARX_EXIT" : "other",
         code, again == PARX_OK ? "PARX_OK" : "other", (int)lua_tointeger(L, -1));
  lua_pop(L, 1);

  /* 11. parx.async called on the main VM's own state, outside any task (a
   * host calling into Lua): the task starts, and the next run drives it. */
  int top = lua_gettop(L);
  lua_getglobal(L, "parx");
  lua_getfield(L, -1, "async");
  luaL_loadstring(L, "parx.sleep(0.01) async_ran = hostlib.twice(...)");
  lua_pushinteger(L, 21);
  r = lua_pcall(L, 2, 1, 0);
  if (r == 0) r = parx_run(rt);
  else fprintf(stderr, "host: parx.async: %s\n", lua_tostring(L, -1));
  lua_settop(L, top);
  lua_getglobal(L, "async_ran");
  printf("parx.async on the main state: %s, async_ran = %d\n", r == PARX_OK ? "ran" : "failed",
         (int)lua_tointeger(L, -1));
  lua_pop(L, 1);

  /* Modules are registered before workers start: later, a clear error. */
  r = parx_register_module(rt, "late", hostlib);
  printf("register after workers: %s: %s\n", r == PARX_ERRRUN ? "PARX_ERRRUN" : "other", parx_last_error(rt));
  return 0;
}

/* `host runtimes`: what the runtime supports besides one per process. */
static int map_sum(parx_runtime *rt, int n) {
  char code[160];
  snprintf(code, sizeof code,
           "local r = parx.pool.map(function(x) return x * x end, {1, 2, 3, %d})\n"
           "result = r[1] + r[2] + r[3] + r[4]", n);
  if (parx_run_string(rt, code, "=map", 1) != PARX_OK) return -1;
  lua_getglobal(parx_state(rt), "result");
  int v = (int)lua_tointeger(parx_state(rt), -1);
  lua_pop(parx_state(rt), 1);
  return v;
}

static parx_runtime *open2(void) {
  parx_options o;
  parx_options_init(&o);
  o.workers = 2;
  return parx_open(&o);
}

static void *on_thread(void *arg) {
  int *out = arg;
  parx_runtime *rt = open2();
  *out = rt ? map_sum(rt, 10) : -1;
  if (rt) parx_close(rt);
  return NULL;
}

static int runtimes(void) {
  /* Two runtimes at once on one thread: separate VMs, workers, globals. */
  parx_runtime *a = open2(), *b = open2();
  if (!a || !b) return 1;
  parx_run_string(a, "who = 'a'", "=a", 1);
  parx_run_string(b, "who = 'b'", "=b", 1);
  int sa = map_sum(a, 4), sb = map_sum(b, 5);
  lua_getglobal(parx_state(a), "who");
  lua_getglobal(parx_state(b), "who");
  printf("two runtimes: %d %d, globals %s %s\n", sa, sb, lua_tostring(parx_state(a), -1),
         lua_tostring(parx_state(b), -1));
  lua_pop(parx_state(a), 1);
  lua_pop(parx_state(b), 1);
  parx_close(a);
  parx_close(b);
  /* A runtime opened, used and closed on threads other than main, two at
   * a time. */
  int r1 = 0, r2 = 0;
  pthread_t t1, t2;
  pthread_create(&t1, NULL, on_thread, &r1);
  pthread_create(&t2, NULL, on_thread, &r2);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  printf("on other threads: %d %d\n", r1, r2);
  /* Open again after close, many times. */
  int ok = 0;
  for (int i = 0; i < 5; i++) {
    parx_runtime *rt = open2();
    if (rt && map_sum(rt, i) == 14 + i * i) ok++;
    if (rt) parx_close(rt);
  }
  printf("reopened: %d of 5\n", ok);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "exit") == 0) return exit_while_busy();
  if (argc > 1 && strcmp(argv[1], "runtimes") == 0) return runtimes();
  parx_options opts;
  parx_options_init(&opts);
  opts.workers = 2;
  parx_runtime *rt = parx_open(&opts);
  if (rt == NULL) {
    fprintf(stderr, "host: parx_open failed\n");
    return 1;
  }
  parx_register(rt, "host_add", host_add);
  parx_register_module(rt, "hostlib", hostlib);

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

  if (tasks_and_values(rt) != 0) return 1;
  parx_close(rt);
  printf("host closed the runtime\n");
  return 0;
}
