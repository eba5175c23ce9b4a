/*
 * chan_host.c -- parx.h's "Channels from the host", checked from C
 * (spec/chan_spec.lua builds and runs it against libparx).
 *
 * A host thread feeds a rendezvous channel that a task on a worker drains,
 * and drains the channel the task answers on; the main thread runs the Lua
 * side.  Channels go both ways across the boundary: pushed into Lua, and
 * taken from a Lua global.  Assertions are never compiled out.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "parx.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define N 1000
static const char *LONG = "a string longer than the inline slot of a channel";

typedef struct {
  parx_channel *to_lua, *from_lua;
  double sum;
  int strings, values;
} feeder;

static void *feed(void *arg) {
  feeder *f = arg;
  for (int i = 1; i <= N; i++) {
    parx_value v = {.type = PARX_VALUE_NUMBER, .number = i};
    CHECK(parx_channel_send(f->to_lua, &v) == PARX_CHAN_OK);
  }
  parx_value s = {.type = PARX_VALUE_STRING, .string = (char *)LONG, .len = strlen(LONG)};
  CHECK(parx_channel_send(f->to_lua, &s) == PARX_CHAN_OK);
  parx_value b = {.type = PARX_VALUE_BOOLEAN, .boolean = 1};
  CHECK(parx_channel_send(f->to_lua, &b) == PARX_CHAN_OK);
  CHECK(parx_channel_close(f->to_lua) == 1);
  CHECK(parx_channel_send(f->to_lua, &b) == PARX_CHAN_CLOSED);

  parx_value got;
  int r;
  while ((r = parx_channel_recv(f->from_lua, &got)) == PARX_CHAN_OK) {
    f->values++;
    if (got.type == PARX_VALUE_NUMBER) f->sum += got.number;
    if (got.type == PARX_VALUE_STRING) {
      CHECK(got.len == strlen(LONG));
      CHECK(strncmp(got.string, "A STRING LONGER", 15) == 0);
      f->strings++;
    }
    parx_value_clear(&got);
  }
  CHECK(r == PARX_CHAN_CLOSED);
  return NULL;
}

int main(void) {
  parx_options o;
  parx_options_init(&o);
  o.deadlock_check = 0; /* tasks wait for this host's thread */
  parx_runtime *rt = parx_open(&o);
  CHECK(rt);
  lua_State *L = parx_state(rt);

  feeder f = {parx_channel_new(0), parx_channel_new(-1), 0, 0, 0};
  CHECK(f.to_lua && f.from_lua);
  parx_channel_push(L, f.to_lua);
  lua_setglobal(L, "from_host");
  parx_channel_push(L, f.from_lua);
  lua_setglobal(L, "to_host");

  /* Non-blocking calls on a fresh channel. */
  parx_channel *side = parx_channel_new(1);
  parx_value one = {.type = PARX_VALUE_NUMBER, .number = 1}, got;
  CHECK(parx_channel_try_recv(side, &got) == PARX_CHAN_EMPTY);
  CHECK(parx_channel_try_send(side, &one) == PARX_CHAN_OK);
  CHECK(parx_channel_try_send(side, &one) == PARX_CHAN_FULL);
  CHECK(parx_channel_len(side) == 1);
  CHECK(parx_channel_try_recv(side, &got) == PARX_CHAN_OK && got.number == 1);
  parx_channel_release(side);

  pthread_t th;
  CHECK(pthread_create(&th, NULL, feed, &f) == 0);
  int rc = parx_run_string(rt,
    "local t = parx.spawn(function(a, b)\n"
    "  local n = 0\n"
    "  for v in a:iter() do\n"
    "    n = n + 1\n"
    "    if type(v) == 'number' then b:send(v * 2)\n"
    "    elseif type(v) == 'string' then b:send(v:upper())\n"
    "    else b:send({v}) end\n" /* a table: the host sees PARX_VALUE_OTHER */
    "  end\n"
    "  b:close()\n"
    "  return n\n"
    "end, from_host, to_host)\n"
    "count = t:join()\n"
    "made_in_lua = parx.channel(2)\n"
    "made_in_lua:send('from lua')\n",
    "=chan_host", 1);
  if (rc != PARX_OK) fprintf(stderr, "%s\n", parx_last_error(rt));
  CHECK(rc == PARX_OK);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(f.values == N + 2);
  CHECK(f.strings == 1);
  CHECK(f.sum == (double)N * (N + 1));

  lua_getglobal(L, "count");
  CHECK(lua_tonumber(L, -1) == N + 2);
  lua_pop(L, 1);
  lua_getglobal(L, "made_in_lua");
  parx_channel *mine = parx_channel_get(L, -1);
  lua_pop(L, 1);
  CHECK(mine);
  CHECK(parx_channel_recv(mine, &got) == PARX_CHAN_OK);
  CHECK(got.type == PARX_VALUE_STRING && strcmp(got.string, "from lua") == 0);
  parx_value_clear(&got);
  lua_pushnumber(L, 3);
  CHECK(parx_channel_get(L, -1) == NULL);
  lua_pop(L, 1);

  parx_channel_release(mine);
  parx_channel_release(f.to_lua);
  parx_channel_release(f.from_lua);
  parx_close(rt);
  printf("chan host ok\n");
  return 0;
}
