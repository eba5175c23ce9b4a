/*
 * lines.h -- the work of the two event-loop hosts (poll_host.c,
 * glib_host.c): each line the host reads from standard input becomes a
 * task on a worker (parx_spawn), and the host prints each task's result,
 * a table, in the order the lines came, as soon as it can.  The hosts
 * differ only in the loop that drives it all.
 */
#ifndef LINES_H
#define LINES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <parx.h>

/* describe(line) runs on a worker: the words, the longest, the line
 * uppercased; "fail" raises, to show an error coming back. */
static const char lines_lua[] =
    "function describe(line)\n"
    "  if line == 'fail' then error('asked to fail', 0) end\n"
    "  local n, longest = 0, ''\n"
    "  for w in line:gmatch('%S+') do\n"
    "    n = n + 1\n"
    "    if #w > #longest then longest = w end\n"
    "  end\n"
    "  parx.sleep(0.01 * (n % 3))  -- finish out of order\n"
    "  return {words = n, longest = longest, upper = line:upper()}\n"
    "end\n";

typedef struct lines {
  parx_runtime *rt;
  parx_task *tasks[256];
  int first, next; /* tasks[first..next-1] are pending, in order */
  int printed;
} lines;

static int lines_open(lines *ls) {
  memset(ls, 0, sizeof *ls);
  parx_options o;
  parx_options_init(&o);
  o.workers = 2;
  ls->rt = parx_open(&o);
  if (!ls->rt) return -1;
  if (parx_run_string(ls->rt, lines_lua, "=lines", 1) != PARX_OK) {
    fprintf(stderr, "host: %s\n", parx_last_error(ls->rt));
    return -1;
  }
  return 0;
}

/* Start describe(line) on a worker. */
static int lines_submit(lines *ls, const char *line, size_t len) {
  if (ls->next == 256) return -1;
  lua_State *L = parx_state(ls->rt);
  lua_getglobal(L, "describe");
  lua_pushlstring(L, line, len);
  parx_task *t = parx_spawn(ls->rt, 1, PARX_ON_WORKER);
  if (!t) return -1;
  ls->tasks[ls->next++] = t;
  return 0;
}

/* Print the tasks that ended, in order, up to the first still running;
 * returns how many are still pending. */
static int lines_collect(lines *ls) {
  lua_State *L = parx_state(ls->rt);
  while (ls->first < ls->next && parx_task_done(ls->tasks[ls->first])) {
    parx_task *t = ls->tasks[ls->first++];
    int n = parx_task_results(ls->rt, t);
    ls->printed++;
    if (n == 1) {
      lua_getfield(L, -1, "words");
      lua_getfield(L, -2, "longest");
      lua_getfield(L, -3, "upper");
      printf("line %d: %d words, longest '%s', %s\n", ls->printed, (int)lua_tointeger(L, -3),
             lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 4);
    } else {
      const char *e = lua_tostring(L, -1); /* the message, then the traceback */
      printf("line %d: failed: %.*s\n", ls->printed, e ? (int)strcspn(e, "\n") : 0, e ? e : "");
      lua_pop(L, 1);
    }
    fflush(stdout);
    parx_task_release(t);
  }
  return ls->next - ls->first;
}

#endif
