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
 */
#include "../core/ioreq.h"
#include "bounds.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "platform/curl.h" /* libcurl under px_curl_* names */

/* The body limit when opts.max_size is absent: large enough for any
 * response a script holds in one string, small enough to live through a
 * decompression bomb. */
#define DEFAULT_MAX_SIZE ((size_t)1 << 30)

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
  int too_big;       /* the body passed it: the transfer was stopped */
  px_queue link;     /* on the multi's transfers in flight */
  char errbuf[CURL_ERROR_SIZE];
} http_req;

struct http_multi {
  CURLM *multi;
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_async_t keepalive;
  px_queue polls;   /* poll_ctx.link */
  px_queue reqs;    /* http_req.link: transfers in flight */
  int inflight;
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

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  http_req *r = userdata;
  size_t n = size * nmemb;
  int rc = membuf_add(&r->body, ptr, n, r->max_size);
  if (rc == -2) r->too_big = 1;
  return rc == 0 ? n : 0; /* 0 stops the transfer (CURLE_WRITE_ERROR) */
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
  if (r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  free(r->body.data);
  free(r->head.data);
  free(r);
}

static void req_unlink(http_multi *m, http_req *r) {
  px_queue_remove(&r->link);
  m->inflight--;
  keepalive_update(m);
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
    r->result = result;
    if (!px_req_done(&r->req)) req_free(r);
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
  while (!px_queue_empty(&m->reqs)) {
    http_req *r = px_container_of(px_queue_head(&m->reqs), http_req, link);
    curl_multi_remove_handle(m->multi, r->easy);
    req_unlink(m, r);
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

static int req_done(lua_State *co, px_req *req) {
  http_req *r = px_container_of(req, http_req, req);
  int n;
  if (r->result != CURLE_OK) {
    const char *detail;
    int err = curl_error_code(r, &detail);
    n = px_push_error(co, err, detail);
  } else {
    long status = 0;
    char *url = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
    lua_createtable(co, 0, 4);
    lua_pushinteger(co, status);
    lua_setfield(co, -2, "status");
    push_headers(co, &r->head);
    lua_setfield(co, -2, "headers");
    lua_pushlstring(co, r->body.data ? r->body.data : "", r->body.len);
    lua_setfield(co, -2, "body");
    if (url) {
      lua_pushstring(co, url);
      lua_setfield(co, -2, "url");
    }
    n = 1;
  }
  req_free(r);
  return n;
}

static void req_drop(px_req *req) { req_free(px_container_of(req, http_req, req)); }

/* Cancelling a transfer removes it from the multi at once: the
 * connection is closed or returned to the cache by libcurl. */
static void req_abandon(px_req *req) {
  http_req *r = px_container_of(req, http_req, req);
  curl_multi_remove_handle(r->m->multi, r->easy);
  req_unlink(r->m, r);
  req_free(r);
}

static const px_req_type http_req_type = {
    .done = req_done, .drop = req_drop, .abandon = req_abandon};

/* ---- request ---------------------------------------------------------- */

static const char *opt_string(lua_State *L, const char *field, size_t *len) {
  lua_getfield(L, 1, field);
  const char *s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING)
    s = lua_tolstring(L, -1, len);
  else if (!lua_isnil(L, -1))
    luaL_error(L, "bad field '%s' (string expected, got %s)", field, luaL_typename(L, -1));
  lua_pop(L, 1); /* the string stays alive: it is referenced by the table */
  return s;
}

/* Options that are one string handed to libcurl (which copies it): TLS
 * files and the proxy. */
static const struct {
  const char *field;
  CURLoption option;
} string_options[] = {
    {"cafile", CURLOPT_CAINFO}, {"capath", CURLOPT_CAPATH},   {"cert", CURLOPT_SSLCERT},
    {"key", CURLOPT_SSLKEY},    {"proxy", CURLOPT_PROXY},     {"noproxy", CURLOPT_NOPROXY},
    {NULL, 0}};
#define N_STRING_OPTIONS (sizeof string_options / sizeof string_options[0] - 1)

/* Read them all (raising for a non-string or an embedded NUL) before
 * anything is allocated; NULL where absent. */
static void opt_strings(lua_State *L, const char *values[]) {
  for (size_t i = 0; i < N_STRING_OPTIONS; i++) {
    size_t len = 0;
    values[i] = opt_string(L, string_options[i].field, &len);
    if (values[i] && strlen(values[i]) != len)
      luaL_error(L, "bad field '%s' (contains a NUL byte)", string_options[i].field);
  }
}

static int opt_bool(lua_State *L, const char *field, int dflt) {
  lua_getfield(L, 1, field);
  int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int header_ok(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == 0) return 0;
  return 1;
}

/* Checks opts.headers: {["Name"] = "value", ...} or {"Name: value", ...}.
 * Raises on a bad entry; allocates nothing, so nothing can leak. */
static void check_headers(lua_State *L, int *has_expect) {
  lua_getfield(L, 1, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "bad field 'headers' (table expected)");
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    size_t kl = 0, vl = 0;
    if (lua_type(L, -2) == LUA_TNUMBER) {
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
      if (!v || !header_ok(v, vl) || !memchr(v, ':', vl))
        luaL_error(L, "bad header entry (\"Name: value\" string expected)");
      if (vl >= 7 && strncasecmp(v, "expect:", 7) == 0) *has_expect = 1;
    } else {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
      int vt = lua_type(L, -1);
      const char *v = vt == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
      if (vt == LUA_TNUMBER) v = ""; /* converted in build_headers */
      if (!k || !v || kl == 0 || !header_ok(k, kl) || memchr(k, ':', kl) ||
          !header_ok(v, vl))
        luaL_error(L, "bad header (string name and value without CR/LF expected)");
      if (strcasecmp(k, "expect") == 0) *has_expect = 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* curl_slist_append that keeps the list when it fails (it returns NULL
 * then, and the usual `l = append(l, s)` would lose, and leak, the list). */
static int slist_add(struct curl_slist **list, const char *s) {
  struct curl_slist *n = curl_slist_append(*list, s);
  if (n == NULL) return -1;
  *list = n;
  return 0;
}

/* The checked headers as a curl_slist (*out), built without any Lua call
 * that could raise: a number value is formatted here, not converted on the
 * stack.  Returns -1 when out of memory, with nothing allocated. */
static int build_headers(lua_State *L, struct curl_slist **out) {
  struct curl_slist *list = NULL;
  *out = NULL;
  lua_getfield(L, 1, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  int t = lua_gettop(L), rc = 0;
  lua_pushnil(L);
  while (rc == 0 && lua_next(L, t)) {
    if (lua_type(L, -2) == LUA_TNUMBER) {
      rc = slist_add(&list, lua_tostring(L, -1));
    } else {
      size_t kl = 0, vl = 0;
      const char *k = lua_tolstring(L, -2, &kl);
      char num[64];
      const char *v = num;
      if (lua_type(L, -1) == LUA_TSTRING) {
        v = lua_tolstring(L, -1, &vl);
      } else {
        vl = (size_t)snprintf(num, sizeof num, "%.14g", lua_tonumber(L, -1));
      }
      /* "Name;" sends an empty header; "Name:" would remove it. */
      char *line = malloc(kl + vl + 3);
      if (line == NULL) {
        rc = -1;
      } else {
        memcpy(line, k, kl);
        if (vl) {
          memcpy(line + kl, ": ", 2);
          memcpy(line + kl + 2, v, vl + 1);
        } else {
          memcpy(line + kl, ";", 2);
        }
        rc = slist_add(&list, line);
        free(line);
      }
    }
    lua_pop(L, 1);
  }
  if (rc != 0) {
    lua_pop(L, 1); /* the key lua_next left */
    curl_slist_free_all(list);
    list = NULL;
  }
  lua_pop(L, 1);
  *out = list;
  return rc;
}

/* opts.timeout: nil or 0 (none), math.huge (none), or seconds > 0. */
static long opt_timeout_ms(lua_State *L) {
  lua_getfield(L, 1, "timeout");
  long ms = 0;
  if (!lua_isnil(L, -1)) {
    lua_Number t = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(t >= 0))
      luaL_error(L, "bad field 'timeout' (non-negative number of seconds expected)");
    uint64_t checked;
    if (t > 0 && px_seconds_to_ms(t, &checked) == 1) ms = (long)checked; /* else no limit */
  }
  lua_pop(L, 1);
  return ms;
}

/* opts.max_size: bytes > 0, math.huge for the string limit itself. */
static size_t opt_max_size(lua_State *L) {
  lua_getfield(L, 1, "max_size");
  size_t max = DEFAULT_MAX_SIZE;
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 1))
      luaL_error(L, "bad field 'max_size' (positive number of bytes expected)");
    max = n >= (lua_Number)PX_IO_MAX_STRING ? PX_IO_MAX_STRING : (size_t)n;
  }
  if (max > px_io_max_string()) max = px_io_max_string();
  lua_pop(L, 1);
  return max;
}

/* opts.protocols: a list of scheme names, default {"http", "https"}.
 * Written as libcurl's comma-separated list into allow; redirects may use
 * the same schemes except file (into redir). */
static void opt_protocols(lua_State *L, char *allow, char *redir, size_t size) {
  strcpy(allow, "http,https");
  strcpy(redir, "http,https");
  lua_getfield(L, 1, "protocols");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "bad field 'protocols' (list of scheme names expected)");
  size_t na = 0, nr = 0;
  int n = (int)lua_objlen(L, -1);
  if (n == 0) luaL_error(L, "bad field 'protocols' (empty list)");
  allow[0] = redir[0] = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    size_t len;
    const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int ok = p != NULL && len > 0 && len < 16;
    for (size_t j = 0; ok && j < len; j++) ok = isalnum((unsigned char)p[j]);
    if (!ok || na + len + 2 > size) luaL_error(L, "bad field 'protocols' (entry %d is not a scheme name)", i);
    na += (size_t)snprintf(allow + na, size - na, "%s%s", na ? "," : "", p);
    if (strcasecmp(p, "file") != 0)
      nr += (size_t)snprintf(redir + nr, size - nr, "%s%s", nr ? "," : "", p);
    lua_pop(L, 1);
  }
  if (nr == 0) strcpy(redir, "http,https"); /* file alone never redirects */
  lua_pop(L, 1);
}

static int http_request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t url_len, method_len = 0, body_len = 0;
  const char *url = opt_string(L, "url", &url_len);
  if (!url || url_len == 0 || strlen(url) != url_len)
    return luaL_error(L, "bad field 'url' (non-empty string expected)");
  const char *method = opt_string(L, "method", &method_len);
  const char *body = opt_string(L, "body", &body_len);
  if (method && (method_len == 0 || !header_ok(method, method_len) || strchr(method, ' ')))
    return luaL_error(L, "bad field 'method'");
  long timeout_ms = opt_timeout_ms(L);
  size_t max_size = opt_max_size(L);
  char protocols[256], redir_protocols[256];
  opt_protocols(L, protocols, redir_protocols, sizeof protocols);
  int follow = opt_bool(L, "follow", 1);
  int verify = opt_bool(L, "verify", 1);
  const char *strings[N_STRING_OPTIONS];
  opt_strings(L, strings);
  int has_expect = 0;
  check_headers(L, &has_expect);

  /* Everything that may raise comes before the first allocation. */
  px_check_can_park(L);
  http_multi *m = get_multi(L);
  http_req *r = m ? calloc(1, sizeof *r) : NULL;
  CURL *easy = r ? curl_easy_init() : NULL;
  struct curl_slist *headers = NULL;
  if (!easy || build_headers(L, &headers) < 0 ||
      (body && !has_expect && slist_add(&headers, "Expect:") < 0)) {
    if (easy) curl_easy_cleanup(easy);
    free(r);
    curl_slist_free_all(headers);
    return px_push_error(L, UV_ENOMEM, NULL);
  }
  r->easy = easy;
  r->m = m;
  px_queue_init(&r->link);
  r->headers = headers;
  r->max_size = max_size;
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, (long)follow);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 20L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, (long)verify);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "parx/" "0.1");
  for (size_t i = 0; i < N_STRING_OPTIONS; i++)
    if (strings[i]) curl_easy_setopt(easy, string_options[i].option, strings[i]);
  if (curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, protocols) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, redir_protocols) != CURLE_OK) {
    req_free(r);
    return px_push_error(L, UV_EPROTONOSUPPORT, protocols);
  }
  if (timeout_ms > 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  if (headers) curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  if (body) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body);
  }
  if (method) {
    if (strcmp(method, "GET") == 0 && !body)
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "HEAD") == 0)
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") == 0 && !body) {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
      curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, "");
    } else if (strcmp(method, "POST") != 0)
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
  }

  px_req_init(&r->req, &http_req_type, "http request");
  px_req_start(L, &r->req); /* cannot raise: checked above */
  CURLMcode mc = curl_multi_add_handle(m->multi, easy);
  if (mc != CURLM_OK) {
    req_free(r);
    return px_push_error(L, PX_EHTTP, curl_multi_strerror(mc));
  }
  px_queue_insert_tail(&m->reqs, &r->link);
  m->inflight++;
  keepalive_update(m);
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

static const luaL_Reg http_funcs[] = {
    {"request", http_request}, {"info", http_info}, {NULL, NULL}};

int px_open_http(lua_State *L) {
  lua_newtable(L);
  luaL_setfuncs(L, http_funcs, 0);
  return 1;
}
