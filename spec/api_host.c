/*
 * api_host.c -- the functions of parx.h that the other host programs
 * (the hosts of scripts/embed/ and spec/chan_host.c) do not call, checked from C
 * (spec/embed_spec.lua builds it against libparx.a and runs it with a
 * script on standard input).  Each section prints one line the spec
 * reads; assertions are never compiled out.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "parx.h"

static void check(int ok, const char *what, int line) {
  if (ok) return;
  fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, line, what);
  exit(1);
}
#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

static int global_int(lua_State *L, const char *name) {
  lua_getglobal(L, name);
  int v = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* parx_strerror: one static message per result, "unknown result" else. */
static void strerror_section(void) {
  CHECK(strcmp(parx_strerror(PARX_OK), "no error") == 0);
  CHECK(strcmp(parx_strerror(PARX_ERRMEM), "not enough memory") == 0);
  CHECK(strcmp(parx_strerror(12345), "unknown result") == 0);
  for (int r = PARX_ERRPANIC; r <= PARX_OK; r++) {
    CHECK(parx_strerror(r) != NULL && parx_strerror(r)[0] != '\0');
    CHECK(strcmp(parx_strerror(r), "unknown result") != 0);
  }
  printf("strerror: %s, %s\n", parx_strerror(PARX_ERRSYNTAX), parx_strerror(12345));
}

/* parx_set_args: arg[0] is argv[script], later ones positive, earlier
 * ones negative. */
static void args_section(parx_runtime *rt) {
  char *argv[] = {"host", "-x", "script.lua", "one", "two", NULL};
  parx_set_args(rt, 5, argv, 2);
  int r = parx_run_string(rt,
    "assert(arg[0] == 'script.lua' and arg[1] == 'one' and arg[2] == 'two')\n"
    "assert(arg[-1] == '-x' and arg[-2] == 'host' and arg[3] == nil)\n"
    "print('args: ' .. table.concat(arg, ' ', 1, #arg))", "=args", 1);
  CHECK(r == PARX_OK);
  fflush(stdout);
}

/* parx_run_file: a file (a '#' first line skipped), standard input (NULL),
 * and the results for a missing file and a syntax error. */
static void run_file_section(parx_runtime *rt) {
  char path[] = "/tmp/parx-api-host-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  CHECK(f != NULL);
  fputs("#!/usr/bin/env parx\nFROM_FILE = (FROM_FILE or 0) + 1\n", f);
  fclose(f);
  CHECK(parx_run_file(rt, path, 1) == PARX_OK);
  CHECK(parx_run_file(rt, path, 0) == PARX_OK);
  CHECK(global_int(parx_state(rt), "FROM_FILE") == 2);
  f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("this is not lua\n", f);
  fclose(f);
  CHECK(parx_run_file(rt, path, 1) == PARX_ERRSYNTAX);
  remove(path);
  CHECK(parx_run_file(rt, path, 1) == PARX_ERRFILE);
  CHECK(strstr(parx_last_error(rt), path) != NULL);
  CHECK(parx_run_file(rt, NULL, 1) == PARX_OK); /* the spec pipes a script in */
  CHECK(global_int(parx_state(rt), "FROM_STDIN") == 42);
  printf("run_file: file twice, stdin %d\n", global_int(parx_state(rt), "FROM_STDIN"));
}

/* parx_start_function: a task of the main VM driven by parx_step; its
 * failure surfaces there. */
static void start_function_section(parx_runtime *rt) {
  lua_State *L = parx_state(rt);
  CHECK(luaL_loadstring(L, "local a, b = ...; parx.sleep(0.01); SUM = a + b") == 0);
  lua_pushinteger(L, 2);
  lua_pushinteger(L, 3);
  CHECK(parx_start_function(rt, 2) == PARX_OK);
  int r;
  while ((r = parx_step(rt, 0)) > 0) {}
  CHECK(r == 0);
  CHECK(global_int(L, "SUM") == 5);
  CHECK(luaL_loadstring(L, "parx.sleep(0); error('started and failed', 0)") == 0);
  CHECK(parx_start_function(rt, 0) == PARX_OK);
  while ((r = parx_step(rt, 0)) > 0) {}
  CHECK(r < 0);
  CHECK(strstr(parx_last_error(rt), "started and failed") != NULL);
  printf("start_function: sum %d, then %s\n", global_int(L, "SUM"), "started and failed");
}

/* parx_task_wait: drive until a worker's task ended, then its results or
 * its error. */
static void task_wait_section(parx_runtime *rt) {
  lua_State *L = parx_state(rt);
  CHECK(luaL_loadstring(L, "local x = ...; parx.sleep(0.01); return x * 2") == 0);
  lua_pushinteger(L, 21);
  parx_task *t = parx_spawn(rt, 1, PARX_ON_WORKER);
  CHECK(t != NULL);
  CHECK(parx_task_wait(rt, t) == PARX_OK);
  CHECK(parx_task_done(t));
  CHECK(parx_task_results(rt, t) == 1);
  int doubled = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  CHECK(doubled == 42);
  parx_task_release(t);
  CHECK(luaL_loadstring(L, "error('worker failed', 0)") == 0);
  t = parx_spawn(rt, 0, PARX_ON_WORKER);
  CHECK(t != NULL);
  CHECK(parx_task_wait(rt, t) == PARX_ERRRUN);
  CHECK(strstr(parx_last_error(rt), "worker failed") != NULL);
  parx_task_release(t);
  printf("task_wait: %d, then worker failed\n", doubled);
}

/* parx_channel_retain keeps a channel alive past a release;
 * parx_channel_recv_lua takes a table a worker sent, whole. */
static void channel_section(parx_runtime *rt) {
  lua_State *L = parx_state(rt);
  parx_channel *ch = parx_channel_new(-1);
  CHECK(ch != NULL);
  parx_channel_retain(ch);
  parx_channel_release(ch); /* the retained reference keeps it */
  parx_channel_push(L, ch);
  lua_setglobal(L, "CH");
  CHECK(parx_run_string(rt,
    "parx.spawn(function(ch) ch:send({n = 3, list = {1, 2, 3}}); ch:close() end, CH)",
    "=channel", 0) == PARX_OK);
  CHECK(parx_channel_recv_lua(ch, L) == PARX_CHAN_OK);
  CHECK(lua_istable(L, -1));
  lua_getfield(L, -1, "list");
  lua_rawgeti(L, -1, 3);
  int third = (int)lua_tointeger(L, -1);
  lua_pop(L, 3);
  CHECK(third == 3);
  CHECK(parx_channel_recv_lua(ch, L) == PARX_CHAN_CLOSED);
  lua_pushnil(L);
  lua_setglobal(L, "CH");
  parx_channel_release(ch);
  printf("channel: list[3] = %d, then closed\n", third);
}

/* parx_dump_on_sigusr1: SIGUSR1 then dumps the tasks instead of ending the
 * process (its default action). */
static void dump_section(parx_runtime *rt) {
  CHECK(parx_dump_on_sigusr1(rt) == PARX_OK);
  fflush(stdout);
  CHECK(raise(SIGUSR1) == 0);
  /* The dump is written once every VM has answered: wait for its file
   * (the spec runs this with TMPDIR set to an empty directory). */
  CHECK(parx_run_string(rt,
    "local dir = assert(os.getenv('TMPDIR'))\n"
    "for _ = 1, 1000 do\n"
    "  if #assert(parx.fs.readdir(dir)) > 0 then return end\n"
    "  parx.sleep(0.01)\n"
    "end\n"
    "error('no dump in ' .. dir)", "=dump", 1) == PARX_OK);
  printf("dump: the process went on\n");
}

int main(void) {
  strerror_section();
  parx_options o;
  parx_options_init(&o);
  o.workers = 2;
  parx_runtime *rt = parx_open(&o);
  CHECK(rt != NULL);
  args_section(rt);
  run_file_section(rt);
  start_function_section(rt);
  task_wait_section(rt);
  channel_section(rt);
  dump_section(rt);
  parx_close(rt);
  printf("host closed the runtime\n");
  return 0;
}
