/*
 * http.c -- an HTTP client on libcurl's multi interface, driven by the
 * VM's libuv loop ("parx.c.http").
 *
 *   request{method, url, headers, body, timeout, follow, verify, max_size,
 *           protocols}
 *     -> {status, headers, body, url} | nil, msg, code
 *
 * Bounds.  The body (after libcurl decoded a Content-Encoding) may not pass
 * max_size bytes (default DEFAULT_MAX_SIZE, at most the Lua string limit):
 * the transfer stops there and ends in nil, "EFBIG: ...", "EFBIG", so a
 * small gzip bomb costs max_size bytes, not what it expands to.  Only
 * http and https are spoken unless opts.protocols names others, and a
 * redirect never leads to file://.
 *
 * One CURLM per VM, made at the first request and kept in the VM's registry
 * (its __gc tears it down with the VM).  libcurl tells us which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION: one uv_poll_t per socket) and when to
 * call it back (CURLMOPT_TIMERFUNCTION: one uv_timer_t); libuv calls
 * curl_multi_socket_action when they fire; finished transfers wake their
 * tasks.  No Lua runs in any of these callbacks.  Hundreds of requests in
 * one VM share one loop, one connection cache and one DNS cache.
 *
 * Loop liveness: the polls and the timer are unreferenced, and a uv_async_t
 * that never fires is referenced exactly while transfers are in flight, so
 * connections idling in libcurl's cache never keep a script alive.
 *
 * The body.  Held: one buffer, sized from Content-Length when the server
 * sends one (no growth by doubling, no copy), copied once into the Lua
 * string when the transfer ends; the task wakes once, at the end.  The
 * buffer and the string exist together for that copy: a body costs twice
 * its size at its peak (a LuaJIT string cannot be filled in place).
 * Streamed (opts.sink): to a file path, written here as it arrives (no
 * wake-up at all until the end); to a function, in chunks: the task wakes
 * when SINK_CHUNK bytes wait, takes them with next() and calls the
 * function on its own coroutine (lua/parx/http.lua); the transfer pauses
 * while SINK_MAX wait, so memory stays constant whatever the body's size.
 */
#include "../core/ioreq.h"
#include "bounds.h"
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* libcurl's receive buffer for a streamed body (a held one keeps curl's
 * 16 KiB): fewer reads and callbacks per megabyte.  Not for every request:
 * libcurl allocates it per transfer, and 200 small requests at once then
 * cost a fifth more CPU (with 256 KiB). */
#define STREAM_BUFFER (64 * 1024)

/* A held body gets BIG_BUFFER when the last transfer that ended in this
 * VM brought BIG_AFTER bytes or more: libcurl sizes its buffer before the
 * first byte, when the Content-Length is not known yet, and cannot grow
 * it during the transfer, so the previous body is the guess.  Measured
 * (task-clock of 30 GETs of 8 MB, 2 vCPUs, interleaved rounds, medians):
 * 316 ms with libcurl's 16 KiB, 232-248 with 100 KiB (curl the command's
 * size), 209 with 256 KiB: fewer reads and polls per megabyte.  200
 * concurrent 1 KiB requests cost 9-13% more CPU with 64-100 KiB each
 * (libcurl allocates the buffer per transfer), so they keep 16 KiB; a
 * small body right after a big one pays that once.  Only while fewer than
 * BIG_INFLIGHT transfers run: hundreds at once keep 16 KiB each, not
 * 256 KiB. */
#define BIG_BUFFER (256 * 1024)
#define BIG_AFTER (1024 * 1024)
#define BIG_INFLIGHT 16

/* A function sink's chunks are at most SINK_CHUNK bytes: below LuaJIT's
 * threshold for allocating a string with its own mmap, so chunk strings
 * reuse the allocator's memory (2 MB chunks page-faulted afresh each time:
 * three times the CPU of a held body).  The task wakes as soon as a chunk
 * waits (it runs on this same thread: a wake-up is a queue push); the
 * transfer pauses only when SINK_MAX waits, so libcurl keeps draining the
 * socket while the task is busy (pausing at every chunk made each one wait
 * for the sender to be scheduled again). */
#define SINK_CHUNK (64 * 1024)
#define SINK_MAX (16 * SINK_CHUNK)

typedef struct membuf {
  char *data;
  size_t len, cap;
} membuf;

typedef struct http_multi http_multi;

typedef struct poll_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  http_multi *m;
  px_queue link; /* on the multi's polls */
} poll_ctx;

typedef struct http_req {
  px_req req;
  CURL *easy;
  http_multi *m;
  CURLcode result;
  struct curl_slist *headers;
  membuf body, head;
  size_t max_size;   /* the body's limit */
  size_t received;   /* body bytes so far, streamed ones included */
  size_t taken;      /* a stream's: bytes of body already handed over */
  int too_big;       /* the body passed it: the transfer was stopped */
  int in_flight;     /* in the multi, on its reqs */
  /* Streams (opts.sink).  A function sink's request belongs to its
   * transfer userdata (box), which frees it; body holds the next chunk. */
  int stream;        /* a function sink */
  int fd;            /* a file sink, or -1 */
  int sink_err;      /* writing the file failed: the UV error */
  int paused;        /* on_body paused the transfer: the chunk is full */
  int finished;      /* the transfer ended: result is set */
  px_queue link;     /* on the multi's transfers in flight */
  px_queue stream_link; /* a stream's, on the multi's streams until freed */
  char errbuf[CURL_ERROR_SIZE];
} http_req;

struct http_multi {
  CURLM *multi;
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_async_t keepalive;
  px_queue polls;   /* poll_ctx.link */
  px_queue reqs;    /* http_req.link: transfers in flight */
  px_queue streams; /* http_req.stream_link: function sinks' requests */
  int inflight;
  int big_bodies;   /* the last transfer that ended brought >= BIG_AFTER */
  int open_handles; /* uv handles whose close callback is still due */
  int dead;         /* torn down; free at the last close callback */
};

static const char multi_key = 0;

/* ---- buffers --------------------------------------------------------- */

/* Append, keeping b->len <= limit: -2 when the data would pass it, -1
 * when out of memory.  The buffer never grows past limit. */
static int membuf_add(membuf *b, const char *data, size_t n, size_t limit) {
  if (n > limit - b->len) return -2;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16384;
    while (cap < b->len + n) cap *= 2;
    if (cap > limit) cap = limit;
    char *nd = realloc(b->data, cap);
    if (!nd) return -1;
    b->data = nd;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  return 0;
}

/* The whole of data to fd: 0, or a UV error. */
static int write_all(int fd, const char *data, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    data += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Before the first byte of a held body: room for all of it when the server
 * said how much (a compressed body may still grow past it). */
static void reserve_body(http_req *r) {
  curl_off_t length = -1;
  curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
  if (length <= 0 || (uint64_t)length > r->max_size) return;
  char *data = malloc((size_t)length);
  if (!data) return; /* membuf_add reports it */
  r->body.data = data;
  r->body.cap = (size_t)length;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  http_req *r = userdata;
  size_t n = size * nmemb;
  if (n > r->max_size - r->received) {
    r->too_big = 1;
    return 0; /* 0 stops the transfer (CURLE_WRITE_ERROR) */
  }
  if (r->fd >= 0) {
    r->sink_err = write_all(r->fd, ptr, n);
    if (r->sink_err) return 0;
  } else if (r->stream) {
    /* Enough waits for the task: libcurl keeps this data and hands it
     * over again once next() resumes the transfer. */
    if (r->body.len - r->taken >= SINK_MAX) {
      r->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    if (r->taken > 0 && n > r->body.cap - r->body.len) {
      /* Move what waits to the front rather than grow. */
      memmove(r->body.data, r->body.data + r->taken, r->body.len - r->taken);
      r->body.len -= r->taken;
      r->taken = 0;
    }
    if (membuf_add(&r->body, ptr, n, SIZE_MAX) < 0) return 0;
    if (px_req_active(&r->req)) px_req_done(&r->req);
  } else {
    if (r->body.cap == 0) reserve_body(r);
    if (membuf_add(&r->body, ptr, n, r->max_size) < 0) return 0;
  }
  r->received += n;
  return n;
}

/* Keep only the header block of the last response: redirects and
 * "100 Continue" each start a new one with a status line. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
  http_req *r = userdata;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) r->head.len = 0;
  return membuf_add(&r->head, ptr, n, px_io_max_string()) == 0 ? n : 0;
}

/* ---- the multi handle and libuv -------------------------------------- */

static void multi_handle_closed(uv_handle_t *h) {
  http_multi *m = h->data;
  if (h->type == UV_POLL) free(h); /* poll_ctx starts with its uv_poll_t */
  if (--m->open_handles == 0 && m->dead) free(m);
}

static void poll_close(poll_ctx *p) {
  px_queue_remove(&p->link);
  uv_poll_stop(&p->poll);
  uv_close((uv_handle_t *)&p->poll, multi_handle_closed);
}

static void keepalive_update(http_multi *m) {
  if (m->inflight > 0)
    uv_ref((uv_handle_t *)&m->keepalive);
  else
    uv_unref((uv_handle_t *)&m->keepalive);
}

static void req_free(http_req *r) {
  if (r->stream && r->m) px_queue_remove(&r->stream_link);
  if (r->fd >= 0) close(r->fd);
  if (r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  free(r->body.data);
  free(r->head.data);
  free(r);
}

static void req_unlink(http_multi *m, http_req *r) {
  px_queue_remove(&r->link);
  r->in_flight = 0;
  m->inflight--;
  keepalive_update(m);
}

/* Stop a transfer that has not ended (a cancelled task, a sink that
 * raised, a collected stream). */
static void req_stop(http_req *r) {
  if (!r->in_flight) return;
  curl_multi_remove_handle(r->m->multi, r->easy);
  req_unlink(r->m, r);
  r->finished = 1;
  r->result = CURLE_ABORTED_BY_CALLBACK;
}

/* Collect finished transfers and wake their tasks. */
static void check_done(http_multi *m) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode result = msg->data.result;
    http_req *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(m->multi, easy);
    if (!r) continue;
    req_unlink(m, r);
    m->big_bodies = r->received >= BIG_AFTER;
    r->result = result;
    r->finished = 1;
    /* A stream's box frees it; a request nobody waits for any more is
     * freed here. */
    if (!px_req_done(&r->req) && !r->stream) req_free(r);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  poll_ctx *p = (poll_ctx *)h;
  http_multi *m = p->m;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running;
  curl_multi_socket_action(m->multi, p->fd, flags, &running);
  check_done(m); /* p may be closing now: do not touch it */
}

static void on_timer(uv_timer_t *t) {
  http_multi *m = t->data;
  int running;
  curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(m);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  http_multi *m = userp;
  poll_ctx *p = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (p) {
      curl_multi_assign(m->multi, fd, NULL);
      poll_close(p);
    }
    return 0;
  }
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p) return -1;
    if (uv_poll_init_socket(m->loop, &p->poll, fd) != 0) {
      free(p);
      return -1;
    }
    p->poll.data = m;
    p->fd = fd;
    p->m = m;
    px_queue_insert_tail(&m->polls, &p->link);
    m->open_handles++;
    uv_unref((uv_handle_t *)&p->poll);
    curl_multi_assign(m->multi, fd, p);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&p->poll, events, on_poll);
  return 0;
}

/* libcurl asks to be called back after timeout_ms (-1: never).  A zero
 * timeout still goes through the loop: libcurl must not be re-entered
 * from its own callback. */
static int on_timerfunc(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  http_multi *m = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&m->timer);
  else
    uv_timer_start(&m->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static void on_keepalive(uv_async_t *h) { (void)h; }

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* __gc of the registry anchor: the VM is closing.  Parked tasks were
 * cancelled before (their requests removed); anything left is freed. */
static int multi_gc(lua_State *L) {
  http_multi **box = lua_touserdata(L, 1);
  http_multi *m = *box;
  if (!m) return 0;
  *box = NULL;
  /* A stream's box, collected in any order with this, frees the rest of
   * it: it must not find the multi. */
  while (!px_queue_empty(&m->streams)) {
    http_req *r = px_container_of(px_queue_head(&m->streams), http_req, stream_link);
    req_stop(r);
    px_queue_remove(&r->stream_link);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    r->m = NULL;
  }
  while (!px_queue_empty(&m->reqs)) {
    http_req *r = px_container_of(px_queue_head(&m->reqs), http_req, link);
    req_stop(r);
    req_free(r);
  }
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, NULL);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, NULL);
  curl_multi_cleanup(m->multi);
  while (!px_queue_empty(&m->polls))
    poll_close(px_container_of(px_queue_head(&m->polls), poll_ctx, link));
  m->dead = 1;
  uv_close((uv_handle_t *)&m->timer, multi_handle_closed);
  uv_close((uv_handle_t *)&m->keepalive, multi_handle_closed);
  return 0;
}

/* The VM's multi, made on first use. */
static http_multi *get_multi(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&multi_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  http_multi **box = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (box && *box) return *box;

  pthread_once(&curl_once, curl_init_once);
  http_multi *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->multi = curl_multi_init();
  if (!m->multi) {
    free(m);
    return NULL;
  }
  px_queue_init(&m->polls);
  px_queue_init(&m->reqs);
  px_queue_init(&m->streams);
  m->loop = px_vm_loop(px_vm_of(L));
  uv_timer_init(m->loop, &m->timer);
  m->timer.data = m;
  uv_unref((uv_handle_t *)&m->timer);
  uv_async_init(m->loop, &m->keepalive, on_keepalive);
  m->keepalive.data = m;
  uv_unref((uv_handle_t *)&m->keepalive);
  m->open_handles = 2;
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timerfunc);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);

  lua_pushlightuserdata(L, (void *)&multi_key);
  box = lua_newuserdata(L, sizeof *box);
  *box = m;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, multi_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return m;
}

/* ---- results ---------------------------------------------------------- */

/* Parse the last response's header block into a table: names in lower
 * case, repeated headers joined with ", ". */
static void push_headers(lua_State *L, const membuf *b) {
  lua_newtable(L);
  const char *p = b->data, *end = b->data + b->len;
  int first = 1;
  while (p && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end;
    const char *e = line_end;
    if (e > p && e[-1] == '\r') e--;
    if (first) {
      first = 0; /* the status line */
    } else {
      const char *colon = memchr(p, ':', (size_t)(e - p));
      if (colon && colon > p) {
        char name[128];
        size_t nl = (size_t)(colon - p);
        if (nl >= sizeof name) nl = sizeof name - 1;
        for (size_t i = 0; i < nl; i++) name[i] = (char)tolower((unsigned char)p[i]);
        const char *v = colon + 1;
        while (v < e && (*v == ' ' || *v == '\t')) v++;
        const char *ve = e;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        /* Repeated headers are joined with ", " (RFC 9110 5.3), except
         * Set-Cookie, which cannot be (RFC 6265 3: its Expires dates hold
         * commas): it is always a list of the values in the order sent. */
        int cookie = nl == 10 && memcmp(name, "set-cookie", 10) == 0;
        lua_pushlstring(L, name, nl);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (cookie) {
          if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, -5);
          }
          lua_pushlstring(L, v, (size_t)(ve - v));
          lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
          lua_pop(L, 2);
        } else {
          if (lua_isstring(L, -1)) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, v, (size_t)(ve - v));
            lua_concat(L, 3);
          } else {
            lua_pop(L, 1);
            lua_pushlstring(L, v, (size_t)(ve - v));
          }
          lua_rawset(L, -3);
        }
      }
    }
    p = eol ? eol + 1 : end;
  }
}

/* Map a libcurl failure onto parx's error codes (negative errno values are
 * libuv's codes on Unix). */
static int curl_error_code(http_req *r, const char **detail) {
  long os_errno = 0;
  curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
  *detail = NULL;
  if (r->sink_err) return r->sink_err;
  if (r->too_big) {
    snprintf(r->errbuf, sizeof r->errbuf, "response body over max_size (%zu bytes)", r->max_size);
    *detail = r->errbuf;
    return UV_EFBIG;
  }
  switch (r->result) {
  case CURLE_UNSUPPORTED_PROTOCOL:
    *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result);
    return UV_EPROTONOSUPPORT;
  case CURLE_COULDNT_CONNECT:
    return os_errno > 0 ? (int)-os_errno : UV_ECONNREFUSED;
  case CURLE_OPERATION_TIMEDOUT:
    return UV_ETIMEDOUT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return UV_EAI_NONAME;
  case CURLE_OUT_OF_MEMORY:
    return UV_ENOMEM;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
    if (os_errno > 0) return (int)-os_errno;
    break;
  default:
    break;
  }
  *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result);
  return PX_EHTTP;
}

/* The transfer's outcome: {status, headers, body, url} (no body for a
 * stream), or nil, msg, code. */
static int push_result(lua_State *co, http_req *r) {
  if (r->result != CURLE_OK) {
    const char *detail;
    int err = curl_error_code(r, &detail);
    return px_push_error(co, err, detail);
  }
  long status = 0;
  char *url = NULL;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
  lua_createtable(co, 0, 4);
  if (!r->stream && r->fd < 0) {
    /* The one copy of the body; its buffer goes at once. */
    lua_pushlstring(co, r->body.data ? r->body.data : "", r->body.len);
    free(r->body.data);
    r->body = (membuf){0};
    lua_setfield(co, -2, "body");
  }
  lua_pushinteger(co, status);
  lua_setfield(co, -2, "status");
  push_headers(co, &r->head);
  lua_setfield(co, -2, "headers");
  if (url) {
    lua_pushstring(co, url);
    lua_setfield(co, -2, "url");
  }
  return 1;
}

/* A function sink's next step: a chunk of what waits, else the outcome; 0
 * when neither is there yet.
 * Taking a chunk resumes a paused transfer, which may refill body at once
 * (libcurl hands over what it kept from inside curl_easy_pause). */
static int stream_push(lua_State *co, http_req *r) {
  size_t waiting = r->body.len - r->taken;
  if (waiting > 0) {
    size_t n = waiting < SINK_CHUNK ? waiting : SINK_CHUNK;
    lua_pushlstring(co, r->body.data + r->taken, n);
    r->taken += n;
    if (r->taken == r->body.len) r->body.len = r->taken = 0;
    if (r->paused && r->in_flight && r->body.len - r->taken < SINK_MAX / 2) {
      r->paused = 0;
      curl_easy_pause(r->easy, CURLPAUSE_CONT);
    }
    return 1;
  }
  if (!r->finished) return 0;
  return push_result(co, r);
}

static int req_done(lua_State *co, px_req *req) {
  http_req *r = px_container_of(req, http_req, req);
  if (r->stream) return stream_push(co, r);
  int n = push_result(co, r);
  req_free(r);
  return n;
}

static void req_drop(px_req *req) {
  http_req *r = px_container_of(req, http_req, req);
  if (!r->stream) req_free(r);
}

/* Cancelling a transfer removes it from the multi at once: the
 * connection is closed or returned to the cache by libcurl. */
static void req_abandon(px_req *req) {
  http_req *r = px_container_of(req, http_req, req);
  req_stop(r);
  if (!r->stream) req_free(r);
}

static const px_req_type http_req_type = {
    .done = req_done, .drop = req_drop, .abandon = req_abandon};

/* ---- a function sink's transfer: the userdata that owns it ------------- */

#define TRANSFER_MT "parx.http.transfer"

static http_req *check_transfer(lua_State *L) {
  http_req **box = luaL_checkudata(L, 1, TRANSFER_MT);
  if (!*box) luaL_argerror(L, 1, "transfer already released");
  return *box;
}

static int transfer_gc(lua_State *L) {
  http_req **box = luaL_checkudata(L, 1, TRANSFER_MT);
  if (*box) {
    req_stop(*box);
    req_free(*box);
    *box = NULL;
  }
  return 0;
}

/* next(t): the next chunk (a string), then the outcome (the response
 * table, or nil, msg, code); parks while neither is there. */
static int transfer_next(lua_State *L) {
  http_req *r = check_transfer(L);
  if (px_req_busy(&r->req)) return luaL_error(L, "http transfer: next() while another task waits on it");
  int n = stream_push(L, r);
  if (n > 0) return n;
  px_req_init(&r->req, &http_req_type, "http request");
  px_req_start(L, &r->req);
  px_req_anchor(L, &r->req, 1);
  return px_req_park(L, &r->req);
}

/* abort(t): stop the transfer now (its sink raised). */
static int transfer_abort(lua_State *L) {
  req_stop(check_transfer(L));
  return 0;
}

/* ---- request ---------------------------------------------------------- */

/* request(opts): parks until the response, or, with a function sink,
 * returns the transfer at once for next() (lua/parx/http.lua drives it). */
static int http_request(lua_State *L) {
  px_http_opts o;
  px_http_read_opts(L, &o);
  /* Everything that may raise comes before the first allocation. */
  px_check_can_park(L);
  if (o.sink_fn) luaL_checkstack(L, 4, NULL);
  int fd = -1;
  if (o.sink_path) {
    fd = open(o.sink_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return px_push_error(L, -errno, o.sink_path);
  }
  http_multi *m = get_multi(L);
  http_req *r = m ? calloc(1, sizeof *r) : NULL;
  CURL *easy = r ? curl_easy_init() : NULL;
  struct curl_slist *headers = NULL;
  if (!easy || px_http_build_headers(L, &o, &headers) < 0) {
    if (easy) curl_easy_cleanup(easy);
    if (fd >= 0) close(fd);
    free(r);
    return px_push_error(L, UV_ENOMEM, NULL);
  }
  r->easy = easy;
  r->m = m;
  r->fd = fd;
  r->stream = o.sink_fn;
  px_queue_init(&r->link);
  if (r->stream) px_queue_insert_tail(&m->streams, &r->stream_link);
  r->headers = headers;
  r->max_size = o.max_size;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
  if (r->stream || r->fd >= 0)
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, (long)STREAM_BUFFER);
  else if (m->big_bodies && m->inflight < BIG_INFLIGHT)
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, (long)BIG_BUFFER);
  int err = px_http_configure(easy, &o, headers);
  if (err) {
    req_free(r);
    return px_push_error(L, err, o.protocols);
  }

  http_req **box = NULL;
  if (r->stream) {
    box = lua_newuserdata(L, sizeof *box); /* cannot raise: stack checked */
    *box = r;
    luaL_getmetatable(L, TRANSFER_MT);
    lua_setmetatable(L, -2);
  } else {
    px_req_init(&r->req, &http_req_type, "http request");
    px_req_start(L, &r->req); /* cannot raise: checked above */
    px_trace_wait_on_url(L, &r->req.wait, o.url);
  }
  CURLMcode mc = curl_multi_add_handle(m->multi, easy);
  if (mc != CURLM_OK) {
    if (box) *box = NULL;
    req_free(r);
    return px_push_error(L, PX_EHTTP, curl_multi_strerror(mc));
  }
  px_queue_insert_tail(&m->reqs, &r->link);
  r->in_flight = 1;
  m->inflight++;
  keepalive_update(m);
  if (box) return 1;
  return px_req_park(L, &r->req);
}

/* What libcurl can do here: version, ssl backend, protocols. */
static int http_info(lua_State *L) {
  pthread_once(&curl_once, curl_init_once);
  curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, v->version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, v->ssl_version ? v->ssl_version : "");
  lua_setfield(L, -2, "ssl");
  lua_newtable(L);
  for (int i = 0; v->protocols && v->protocols[i]; i++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, v->protocols[i]);
  }
  lua_setfield(L, -2, "protocols");
  return 1;
}

static const luaL_Reg http_funcs[] = {{"request", http_request},
                                      {"next", transfer_next},
                                      {"abort", transfer_abort},
                                      {"info", http_info},
                                      {NULL, NULL}};

int px_open_http(lua_State *L) {
  luaL_newmetatable(L, TRANSFER_MT);
  lua_pushcfunction(L, transfer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_setfuncs(L, http_funcs, 0);
  return 1;
}
