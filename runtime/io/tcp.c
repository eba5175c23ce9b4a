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
#include "inet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- connect ---------------------------------------------------------
 *
 * A connect owns the new stream until it is delivered, and a timer when a
 * timeout was asked for.  It is freed when every part is finished: the
 * connect request, the timer's close and the waiting task (delivered,
 * discarded or detached by a cancel).  `parts` counts what is left. */
typedef struct connect_op {
  px_req req;
  uv_connect_t connect;
  uv_timer_t timer;
  px_stream *stream;
  int status;
  int timed_out;
  int has_timer;
  int parts;
} connect_op;

static void connect_unref(connect_op *c) {
  if (--c->parts == 0) free(c);
}

static void drop_stream(connect_op *c) {
  if (c->stream) px_stream_discard(c->stream);
  c->stream = NULL;
}

static void on_timer_close(uv_handle_t *h) { connect_unref(h->data); }

static void on_connect(uv_connect_t *req, int status) {
  connect_op *c = req->data;
  c->status = c->timed_out ? UV_ETIMEDOUT : status;
  if (c->has_timer) {
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_close);
  }
  if (!px_req_done(&c->req)) drop_stream(c); /* abandoned: nobody wants it */
  connect_unref(c);
}

/* Closing the handle makes libuv finish the connect with ECANCELED, which
 * on_connect reports as ETIMEDOUT. */
static void on_timeout(uv_timer_t *t) {
  connect_op *c = t->data;
  c->timed_out = 1;
  drop_stream(c);
}

static int connect_done(lua_State *co, px_req *req) {
  connect_op *c = px_container_of(req, connect_op, req);
  int n;
  if (c->status == 0 && c->stream) {
    px_stream_push(co, c->stream);
    c->stream = NULL;
    n = 1;
  } else {
    drop_stream(c);
    n = px_push_error(co, c->status ? c->status : UV_ECANCELED, NULL);
  }
  connect_unref(c);
  return n;
}

static void connect_drop(px_req *req) {
  connect_op *c = px_container_of(req, connect_op, req);
  drop_stream(c);
  connect_unref(c);
}

static void connect_abandon(px_req *req) {
  connect_op *c = px_container_of(req, connect_op, req);
  if (c->has_timer) uv_timer_stop(&c->timer); /* on_connect closes it */
  drop_stream(c); /* on_connect runs with ECANCELED */
  connect_unref(c);
}

static const px_req_type connect_type = {
    .done = connect_done, .drop = connect_drop, .abandon = connect_abandon};

/* connect(ip, port [, timeout_seconds]) */
static int tcp_connect(lua_State *L) {
  int port = px_inet_check_port(L, 2);
  double timeout = luaL_optnumber(L, 3, -1);
  struct sockaddr_storage ss;
  px_inet_check_addr(L, 1, port, &ss);
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
  c->connect.data = c;
  c->stream = s;
  px_req_init(&c->req, &connect_type, "tcp connect");
  px_req_start(L, &c->req); /* cannot raise: checked above */
  px_trace_wait_on(L, &c->req.wait, "host", lua_pushfstring(L, "%s:%d", lua_tostring(L, 1), port));
  lua_pop(L, 1);
  r = uv_tcp_connect(&c->connect, px_stream_tcp(s), (struct sockaddr *)&ss, on_connect);
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
  return px_req_park(L, &c->req);
}

/* ---- listen and accept ---------------------------------------------- */

#define ACCEPT_QUEUE 64

typedef struct server {
  px_socket sock;  /* first: the userdata's pointer is the server's */
  uv_tcp_t handle;
  px_vm *vm;
  px_req acceptor; /* the one task waiting in accept() */
  /* Connections accepted from the connection callback and not yet taken
   * by accept(): libuv accepts a whole burst per loop iteration this way.
   * Once the queue is full, connections wait in the kernel (libuv stops
   * watching the socket until we take one): `pending` counts that one. */
  px_stream *queue[ACCEPT_QUEUE];
  int qhead, qlen;
  int pending;
  int err;         /* an error from the connection callback */
} server;

static void on_server_close(uv_handle_t *h) {
  server *sv = h->data;
  px_iohandle_closed(&sv->sock.h);
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
  px_req_done(&sv->acceptor);
}

/* Hand out the oldest connection (or report why there is none). */
static int do_accept(lua_State *L, server *sv) {
  if (sv->sock.h.closing) return px_push_error(L, PX_ECLOSED, NULL);
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

static int acceptor_done(lua_State *co, px_req *req) {
  return do_accept(co, px_container_of(req, server, acceptor));
}

static const px_req_type acceptor_type = {.done = acceptor_done};

/* server:accept() -> stream, or nil, msg, code; ECLOSED once closed. */
static int server_accept(lua_State *L) {
  px_iohandle *h = px_iohandle_get(L);
  if (!px_iohandle_is_open(h)) return px_push_error(L, PX_ECLOSED, NULL);
  server *sv = (server *)h;
  if (px_req_busy(&sv->acceptor))
    return luaL_error(L, "server is already being accepted on by another task");
  if (sv->qlen > 0 || sv->pending > 0 || sv->err) return do_accept(L, sv);
  return px_iohandle_wait(L, &sv->acceptor, &acceptor_type, "tcp accept", NULL);
}

static void server_close(px_iohandle *h) {
  server *sv = (server *)h;
  for (; sv->qlen > 0; sv->qlen--) {
    px_stream_discard(sv->queue[sv->qhead]);
    sv->qhead = (sv->qhead + 1) % ACCEPT_QUEUE;
  }
  uv_close((uv_handle_t *)&sv->handle, on_server_close);
  px_req_done(&sv->acceptor); /* delivers ECLOSED */
}

static const luaL_Reg server_methods[] = {
    {"accept", server_accept}, {"close", px_iohandle_close_method}, {NULL, NULL}};

static const px_iohandle_type server_type = {
    .name = "parx.tcp.server", .methods = server_methods, .close = server_close,
    .describe = px_socket_describe, .field = px_socket_field};

/* listen(ip, port [, backlog [, reuseport]]) -> server
 * reuseport: several sockets (one per worker VM) share the address and the
 * kernel spreads connections over them. */
static int tcp_listen(lua_State *L) {
  int port = px_inet_check_port(L, 2);
  lua_Number backlog = luaL_optnumber(L, 3, 511);
  int reuseport = lua_toboolean(L, 4);
  luaL_argcheck(L, backlog >= 1 && backlog <= 65535, 3, "backlog must be in 1..65535");
  struct sockaddr_storage ss;
  px_inet_check_addr(L, 1, port, &ss);

  px_vm *vm = px_vm_of(L);
  server *sv = calloc(1, sizeof *sv);
  if (!sv) return px_push_error(L, UV_ENOMEM, NULL);
  px_iohandle_init(&sv->sock.h, &server_type);
  sv->vm = vm;
  /* With reuseport the socket must exist before bind to get the option
   * (libuv 1.44 has no UV_TCP_REUSEPORT flag). */
  int r = reuseport ? uv_tcp_init_ex(px_vm_loop(vm), &sv->handle, ss.ss_family)
                    : uv_tcp_init(px_vm_loop(vm), &sv->handle);
  if (r < 0) {
    free(sv);
    return px_push_error(L, r, NULL);
  }
  sv->handle.data = sv; /* until the userdata exists, closing frees */
  if (reuseport) {
    uv_os_fd_t fd;
    int one = 1;
    r = uv_fileno((uv_handle_t *)&sv->handle, &fd);
    if (r == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      r = uv_translate_sys_error(errno);
    if (r < 0) {
      px_iohandle_close(&sv->sock.h);
      return px_push_error(L, r, NULL);
    }
  }
  r = uv_tcp_bind(&sv->handle, (struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&sv->handle, (int)backlog, on_connection);
  return px_socket_bound(L, &sv->sock, (uv_handle_t *)&sv->handle, r);
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
