/* ioreq.c -- see ioreq.h. */
#include "ioreq.h"

#include <assert.h>
#include <string.h>

static void release_anchor(lua_State *L, px_req *req) {
  if (req->anchor == LUA_NOREF) return;
  luaL_unref(L, LUA_REGISTRYINDEX, req->anchor);
  req->anchor = LUA_NOREF;
}

static int req_deliver(lua_State *co, px_wait *w) {
  px_req *req = px_container_of(w, px_req, wait);
  assert(req->state == PX_REQ_DONE);
  req->state = PX_REQ_IDLE;
  release_anchor(co, req);
  return req->type->done(co, req);
}

static void req_discard(px_wait *w) {
  px_req *req = px_container_of(w, px_req, wait);
  assert(req->state == PX_REQ_DONE);
  req->state = PX_REQ_IDLE;
  release_anchor(px_vm_state(w->vm), req);
  if (req->type->drop) req->type->drop(req);
}

static int req_cancel(px_wait *w) {
  px_req *req = px_container_of(w, px_req, wait);
  if (req->state == PX_REQ_DONE) return 0; /* the wake is on its way */
  assert(req->state == PX_REQ_ACTIVE);
  req->state = PX_REQ_IDLE;
  release_anchor(px_vm_state(w->vm), req);
  if (req->type->abandon) req->type->abandon(req); /* may free req */
  return 1;
}

void px_req_init(px_req *req, const px_req_type *type, const char *what) {
  memset(&req->wait, 0, sizeof req->wait);
  req->wait.what = what;
  req->wait.deliver = req_deliver;
  req->wait.discard = req_discard;
  req->wait.cancel = req_cancel;
  req->type = type;
  req->state = PX_REQ_IDLE;
  req->anchor = LUA_NOREF;
}

void px_req_start(lua_State *L, px_req *req) {
  assert(req->state == PX_REQ_IDLE);
  px_wait_prepare(L, &req->wait);
  req->state = PX_REQ_ACTIVE;
}

void px_req_anchor(lua_State *L, px_req *req, int idx) {
  lua_pushvalue(L, idx);
  req->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
}

int px_req_park(lua_State *L, px_req *req) { return px_park(L, &req->wait); }

int px_req_done(px_req *req) {
  if (req->state != PX_REQ_ACTIVE) return 0;
  req->state = PX_REQ_DONE;
  px_wake(&req->wait);
  return 1;
}
