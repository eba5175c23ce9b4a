/*
 * tcp.c -- TCP connect and listen ("parx.c.tcp").  Connections are
 * px_streams (stream.c).  Names are resolved by the Lua layer
 * (lua/parx/tcp.lua, through parx.dns); the functions here take numeric
 * addresses only.
 *
 *   connect(ip, port [, timeout]) -> stream | nil, msg, code
 *   listen(ip, port [, backlog [, reuseport]]) -> server | nil, msg, code
 *   server:accept() -> stream | nil, msg, code   (ECLOSED once closed)
 *   server:close(), server.port, server.host
 *
 * listen() only binds; the Lua layer runs the accept loop in a task of its
 * own and starts one task per connection, so no Lua runs from a libuv
 * callback here.
 */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum { OP_PARKED, OP_WOKEN, OP_DETACHED };

/* Parse ip:port into ss; returns 0 or a libuv error. */
static int parse_addr(const char *ip, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

static int check_port(lua_State *L, int idx) {
  lua_Number p = luaL_checknumber(L, idx);
  luaL_argcheck(L, p >= 0 && p <= 65535 && p == (int)p, idx,
                "port must be an integer in 0..65535");
  return (int)p;
}

/* ---- connect ---------------------------------------------------------
 *
 * A connect owns the new stream until it is delivered, and a timer when a
 * timeout was asked for.  It is freed when every part is finished: the
 * connect request, the timer's close and the waiting task (delivered,
 * discarded or detached by a cancel).  `parts` counts what is left. */
typedef struct connect_op {
  uv_connect_t req;
  uv_timer_t timer;
  px_wait wait;
  px_stream *stream;
  int status;
  int timed_out;
  int has_timer;
  int state;
  int parts;
} connect_op;

static void connect_unref(connect_op *c) {
  if (--c->parts == 0) free(c);
}

static void on_timer_close(uv_handle_t *h) { connect_unref(h->data); }

static void on_connect(uv_connect_t *req, int status) {
  connect_op *c = req->data;
  c->status = c->timed_out ? UV_ETIMEDOUT : status;
  if (c->has_timer) {
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_close);
  }
  if (c->state == OP_PARKED) {
    c->state = OP_WOKEN;
    px_wake(&c->wait);
  } else if (c->stream) {
    /* Detached by a cancel: nobody wants the connection. */
    px_stream_discard(c->stream);
    c->stream = NULL;
  }
  connect_unref(c);
}

/* Closing the handle makes libuv finish the connect with ECANCELED, which
 * on_connect reports as ETIMEDOUT. */
static void on_timeout(uv_timer_t *t) {
  connect_op *c = t->data;
  c->timed_out = 1;
  if (c->stream) {
    px_stream_discard(c->stream);
    c->stream = NULL;
  }
}

static int connect_deliver(lua_State *co, px_wait *w) {
  connect_op *c = (connect_op *)((char *)w - offsetof(connect_op, wait));
  int n;
  if (c->status == 0 && c->stream) {
    px_stream_push(co, c->stream);
    n = 1;
  } else {
    if (c->stream) px_stream_discard(c->stream);
    n = px_push_error(co, c->status ? c->status : UV_ECANCELED, NULL);
  }
  c->stream = NULL;
  connect_unref(c);
  return n;
}

static void connect_discard(px_wait *w) {
  connect_op *c = (connect_op *)((char *)w - offsetof(connect_op, wait));
  if (c->stream) px_stream_discard(c->stream);
  c->stream = NULL;
  connect_unref(c);
}

static int connect_cancel(px_wait *w) {
  connect_op *c = (connect_op *)((char *)w - offsetof(connect_op, wait));
  if (c->state == OP_WOKEN) return 0;
  c->state = OP_DETACHED;
  if (c->has_timer) uv_timer_stop(&c->timer); /* on_connect closes it */
  if (c->stream) {
    px_stream_discard(c->stream); /* on_connect runs with ECANCELED */
    c->stream = NULL;
  }
  connect_unref(c);
  return 1;
}

/* connect(ip, port [, timeout_seconds]) */
static int tcp_connect(lua_State *L) {
  const char *ip = luaL_checkstring(L, 1);
  int port = check_port(L, 2);
  double timeout = luaL_optnumber(L, 3, -1);
  struct sockaddr_storage ss;
  if (parse_addr(ip, port, &ss) < 0)
    return luaL_argerror(L, 1, "expected a numeric IPv4 or IPv6 address");
  luaL_argcheck(L, timeout == timeout, 3, "timeout is NaN");
  if (lua_gettop(L) >= 3 && !lua_isnil(L, 3) && timeout <= 0)
    return px_push_error(L, UV_ETIMEDOUT, NULL);
  /* math.huge (or any timeout too long for a timer) is no limit. */
  uint64_t ms = 0;
  if (timeout > 0 && px_seconds_to_ms(timeout, &ms) != 1) timeout = -1;
  px_check_can_park(L);

  px_vm *vm = px_vm_of(L);
  uv_loop_t *loop = px_vm_loop(vm);
  connect_op *c = calloc(1, sizeof *c);
  px_stream *s = c ? px_stream_new(vm) : NULL;
  if (!s) {
    free(c);
    return px_push_error(L, UV_ENOMEM, NULL);
  }
  int r = uv_tcp_init(loop, px_stream_tcp(s));
  if (r < 0) {
    free(s);
    free(c);
    return px_push_error(L, r, NULL);
  }
  uv_unref((uv_handle_t *)px_stream_tcp(s));
  uv_tcp_nodelay(px_stream_tcp(s), 1);
  c->req.data = c;
  c->stream = s;
  c->wait.what = "tcp connect";
  c->wait.deliver = connect_deliver;
  c->wait.discard = connect_discard;
  c->wait.cancel = connect_cancel;
  px_wait_prepare(L, &c->wait); /* cannot raise: checked above */
  r = uv_tcp_connect(&c->req, px_stream_tcp(s), (struct sockaddr *)&ss, on_connect);
  if (r < 0) {
    px_stream_discard(s);
    free(c);
    return px_push_error(L, r, NULL);
  }
  c->parts = 2; /* the connect request and the waiting task */
  if (timeout > 0) {
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->has_timer = 1;
    c->parts++;
    uv_timer_start(&c->timer, on_timeout, ms ? ms : 1, 0);
  }
  c->state = OP_PARKED;
  return px_park(L, &c->wait);
}

/* ---- listen and accept ---------------------------------------------- */

#define ACCEPT_QUEUE 64

typedef struct server {
  uv_tcp_t handle;
  px_vm *vm;
  px_wait wait;    /* the acceptor task, while state != OP_DETACHED */
  int state;       /* OP_PARKED / OP_WOKEN / OP_DETACHED (= none parked) */
  int ref;         /* registry ref to the userdata while parked */
  /* Connections accepted from the connection callback and not yet taken
   * by accept(): libuv accepts a whole burst per loop iteration this way.
   * Once the queue is full, connections wait in the kernel (libuv stops
   * watching the socket until we take one): `pending` counts that one. */
  px_stream *queue[ACCEPT_QUEUE];
  int qhead, qlen;
  int pending;
  int err;         /* an error from the connection callback */
  int port;
  int closing, closed, lua_gone;
  char host[64];
} server;

static void on_server_close(uv_handle_t *h) {
  server *sv = h->data;
  sv->closed = 1;
  if (sv->lua_gone) free(sv);
}

static void acceptor_wake(server *sv) {
  if (sv->state != OP_PARKED) return;
  sv->state = OP_WOKEN;
  px_wake(&sv->wait);
}

/* Take the connection libuv holds for sv; 0 or a libuv error. */
static int accept_one(server *sv, px_stream **out) {
  px_stream *s = px_stream_new(sv->vm);
  if (!s) return UV_ENOMEM;
  int r = uv_tcp_init(px_vm_loop(sv->vm), px_stream_tcp(s));
  if (r < 0) {
    free(s);
    return r;
  }
  r = uv_accept((uv_stream_t *)&sv->handle, px_stream_handle(s));
  if (r < 0) {
    px_stream_discard(s);
    return r;
  }
  uv_tcp_nodelay(px_stream_tcp(s), 1);
  *out = s;
  return 0;
}

static void on_connection(uv_stream_t *h, int status) {
  server *sv = h->data;
  px_stream *s;
  if (status < 0) {
    sv->err = status;
  } else if (sv->qlen < ACCEPT_QUEUE && sv->pending == 0) {
    int r = accept_one(sv, &s);
    if (r < 0)
      sv->err = r;
    else
      sv->queue[(sv->qhead + sv->qlen++) % ACCEPT_QUEUE] = s;
  } else {
    sv->pending++;
  }
  acceptor_wake(sv);
}

/* Hand out the oldest connection (or report why there is none). */
static int do_accept(lua_State *L, server *sv) {
  if (sv->closing) return px_push_error(L, PX_ECLOSED, NULL);
  px_stream *s = NULL;
  if (sv->qlen > 0) {
    s = sv->queue[sv->qhead];
    sv->qhead = (sv->qhead + 1) % ACCEPT_QUEUE;
    sv->qlen--;
  } else if (sv->pending > 0) {
    sv->pending--;
    int r = accept_one(sv, &s);
    if (r < 0) return px_push_error(L, r, NULL);
  } else {
    int err = sv->err ? sv->err : UV_EAGAIN;
    sv->err = 0;
    return px_push_error(L, err, NULL);
  }
  px_stream_push(L, s);
  return 1;
}

static void acceptor_release(lua_State *L, server *sv) {
  sv->state = OP_DETACHED;
  luaL_unref(L, LUA_REGISTRYINDEX, sv->ref);
  sv->ref = LUA_NOREF;
}

static int acceptor_deliver(lua_State *co, px_wait *w) {
  server *sv = (server *)((char *)w - offsetof(server, wait));
  acceptor_release(co, sv);
  return do_accept(co, sv);
}

static void acceptor_discard(px_wait *w) {
  server *sv = (server *)((char *)w - offsetof(server, wait));
  acceptor_release(px_vm_state(sv->vm), sv);
}

static int acceptor_cancel(px_wait *w) {
  server *sv = (server *)((char *)w - offsetof(server, wait));
  if (sv->state == OP_WOKEN) return 0;
  acceptor_release(px_vm_state(sv->vm), sv);
  return 1;
}

static server *check_server(lua_State *L, int open) {
  server **box = lua_touserdata(L, 1);
  if (!box || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typerror(L, 1, "parx.tcp.server");
  lua_pop(L, 1);
  if (open && (!*box || (*box)->closing))
    luaL_error(L, "attempt to use a closed server");
  return *box;
}

/* server:accept() -> stream, or nil, msg, code; ECLOSED once closed. */
static int server_accept(lua_State *L) {
  server *sv = check_server(L, 0);
  if (!sv || sv->closing) return px_push_error(L, PX_ECLOSED, NULL);
  if (sv->state != OP_DETACHED)
    return luaL_error(L, "server is already being accepted on by another task");
  if (sv->qlen > 0 || sv->pending > 0 || sv->err) return do_accept(L, sv);
  memset(&sv->wait, 0, sizeof sv->wait);
  sv->wait.what = "tcp accept";
  sv->wait.deliver = acceptor_deliver;
  sv->wait.discard = acceptor_discard;
  sv->wait.cancel = acceptor_cancel;
  px_wait_prepare(L, &sv->wait); /* raises before anything is registered */
  lua_pushvalue(L, 1);
  sv->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sv->state = OP_PARKED;
  return px_park(L, &sv->wait);
}

static void server_start_close(server *sv) {
  if (sv->closing) return;
  sv->closing = 1;
  for (; sv->qlen > 0; sv->qlen--) {
    px_stream_discard(sv->queue[sv->qhead]);
    sv->qhead = (sv->qhead + 1) % ACCEPT_QUEUE;
  }
  uv_close((uv_handle_t *)&sv->handle, on_server_close);
  acceptor_wake(sv);
}

static int server_close(lua_State *L) {
  server *sv = check_server(L, 0);
  if (sv) server_start_close(sv);
  lua_pushboolean(L, 1);
  return 1;
}

static int server_gc(lua_State *L) {
  server **box = lua_touserdata(L, 1);
  server *sv = *box;
  if (!sv) return 0;
  *box = NULL;
  sv->lua_gone = 1;
  if (!sv->closing)
    server_start_close(sv);
  else if (sv->closed)
    free(sv);
  return 0;
}

static int server_tostring(lua_State *L) {
  server *sv = check_server(L, 0);
  if (!sv || sv->closing)
    lua_pushliteral(L, "parx.tcp.server (closed)");
  else
    lua_pushfstring(L, "parx.tcp.server (%s port %d)", sv->host, sv->port);
  return 1;
}

/* __index: methods, then the fields `port`, `host` and `closed`. */
static int server_index(lua_State *L) {
  server *sv = check_server(L, 0);
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  if (!lua_isnil(L, -1)) return 1;
  const char *k = lua_tostring(L, 2);
  if (!k) return 1;
  if (strcmp(k, "port") == 0) {
    lua_pushinteger(L, sv ? sv->port : 0);
  } else if (strcmp(k, "host") == 0) {
    lua_pushstring(L, sv ? sv->host : "");
  } else if (strcmp(k, "closed") == 0) {
    lua_pushboolean(L, !sv || sv->closing);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static const luaL_Reg server_methods[] = {
    {"accept", server_accept}, {"close", server_close}, {NULL, NULL}};

static void push_server_meta(lua_State *L) {
  if (!luaL_newmetatable(L, "parx.tcp.server")) return;
  lua_pushvalue(L, -1);
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -3, "__gc");
  lua_pushcclosure(L, server_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushvalue(L, -1); /* upvalue 1: the metatable */
  lua_newtable(L);      /* upvalue 2: the methods */
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, server_methods, 1);
  lua_pushcclosure(L, server_index, 2);
  lua_setfield(L, -2, "__index");
}

/* listen(ip, port [, backlog [, reuseport]]) -> server
 * reuseport: several sockets (one per worker VM) share the address and the
 * kernel spreads connections over them. */
static int tcp_listen(lua_State *L) {
  const char *ip = luaL_checkstring(L, 1);
  int port = check_port(L, 2);
  lua_Number backlog = luaL_optnumber(L, 3, 511);
  int reuseport = lua_toboolean(L, 4);
  luaL_argcheck(L, backlog >= 1 && backlog <= 65535, 3, "backlog must be in 1..65535");
  struct sockaddr_storage ss;
  if (parse_addr(ip, port, &ss) < 0)
    return luaL_argerror(L, 1, "expected a numeric IPv4 or IPv6 address");

  px_vm *vm = px_vm_of(L);
  server *sv = calloc(1, sizeof *sv);
  if (!sv) return px_push_error(L, UV_ENOMEM, NULL);
  sv->vm = vm;
  sv->state = OP_DETACHED;
  sv->ref = LUA_NOREF;
  /* With reuseport the socket must exist before bind to get the option
   * (libuv 1.44 has no UV_TCP_REUSEPORT flag). */
  int r = reuseport ? uv_tcp_init_ex(px_vm_loop(vm), &sv->handle, ss.ss_family)
                    : uv_tcp_init(px_vm_loop(vm), &sv->handle);
  if (r < 0) {
    free(sv);
    return px_push_error(L, r, NULL);
  }
  sv->handle.data = sv;
  sv->lua_gone = 1; /* until the userdata exists, closing frees */
  if (reuseport) {
    uv_os_fd_t fd;
    int one = 1;
    r = uv_fileno((uv_handle_t *)&sv->handle, &fd);
    if (r == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      r = uv_translate_sys_error(errno);
    if (r < 0) {
      server_start_close(sv);
      return px_push_error(L, r, NULL);
    }
  }
  r = uv_tcp_bind(&sv->handle, (struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&sv->handle, (int)backlog, on_connection);
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  if (r == 0) r = uv_tcp_getsockname(&sv->handle, (struct sockaddr *)&bound, &blen);
  if (r < 0) {
    server_start_close(sv);
    return px_push_error(L, r, NULL);
  }
  if (bound.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&bound;
    uv_ip6_name(a, sv->host, sizeof sv->host);
    sv->port = ntohs(a->sin6_port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&bound;
    uv_ip4_name(a, sv->host, sizeof sv->host);
    sv->port = ntohs(a->sin_port);
  }
  server **box = lua_newuserdata(L, sizeof *box);
  *box = sv;
  sv->lua_gone = 0;
  push_server_meta(L);
  lua_setmetatable(L, -2);
  return 1;
}

/* A monotonic clock in seconds, for deadlines across several attempts. */
static int tcp_clock(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

static const luaL_Reg tcp_funcs[] = {{"connect", tcp_connect},
                                     {"listen", tcp_listen},
                                     {"clock", tcp_clock},
                                     {NULL, NULL}};

int px_open_tcp(lua_State *L) {
  lua_newtable(L);
  luaL_setfuncs(L, tcp_funcs, 0);
  return 1;
}
