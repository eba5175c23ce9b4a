/* dispatch.c -- see dispatch.h. */
#include "dispatch.h"

#include <stdlib.h>

static int dispatcher_done(lua_State *co, px_req *req) {
  return px_dispatcher_poll(co, px_container_of(req, px_dispatcher, req));
}

static const px_req_type dispatcher_type = {.done = dispatcher_done};

void px_dispatcher_init(px_dispatcher *d, const char *what,
                        int (*push)(lua_State *L, px_source *src)) {
  px_queue_init(&d->fired);
  d->active = 0;
  d->next_id = 0;
  d->what = what;
  d->push = push;
  px_req_init(&d->req, &dispatcher_type, what);
}

void px_source_init(px_dispatcher *d, px_source *src) {
  px_queue_init(&src->fired);
  src->id = ++d->next_id;
}

int px_dispatcher_poll(lua_State *L, px_dispatcher *d) {
  if (!px_queue_empty(&d->fired)) {
    px_queue *q = px_queue_head(&d->fired);
    px_queue_remove(q);
    return d->push(L, px_container_of(q, px_source, fired));
  }
  if (d->active > 0)
    lua_pushboolean(L, 0);
  else
    lua_pushnil(L);
  return 1;
}

int px_dispatcher_next(lua_State *L, px_dispatcher *d) {
  if (!px_queue_empty(&d->fired) || d->active == 0) return px_dispatcher_poll(L, d);
  if (px_req_busy(&d->req)) return luaL_error(L, "%s already running", d->what);
  px_req_init(&d->req, &dispatcher_type, d->what);
  px_req_start(L, &d->req);
  return px_req_park(L, &d->req);
}

static int dispatcher_next(lua_State *L) { return px_dispatcher_next(L, px_dispatcher_state(L)); }
static int dispatcher_poll(lua_State *L) { return px_dispatcher_poll(L, px_dispatcher_state(L)); }

static const luaL_Reg dispatcher_funcs[] = {
    {"next", dispatcher_next}, {"poll", dispatcher_poll}, {NULL, NULL}};

static void set_funcs(lua_State *L, const luaL_Reg *funcs) {
  for (const luaL_Reg *r = funcs; r->name; r++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -3, r->name);
  }
}

px_dispatcher *px_dispatcher_open(lua_State *L, size_t size, const char *what,
                                  int (*push)(lua_State *L, px_source *src),
                                  const luaL_Reg *funcs, lua_CFunction gc) {
  lua_newtable(L); /* the module */
  px_dispatcher **box = lua_newuserdata(L, sizeof *box);
  *box = NULL; /* gc meets NULL if the state cannot be allocated */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  px_dispatcher *d = calloc(1, size);
  if (d == NULL) px_oom(L, what);
  *box = d;
  px_dispatcher_init(d, what, push);
  set_funcs(L, funcs);
  set_funcs(L, dispatcher_funcs);
  lua_pop(L, 1);
  return d;
}
