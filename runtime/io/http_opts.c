/*
 * http_opts.c -- a request's options for parx.c.http: read and checked
 * from the Lua table before anything is allocated (every misuse raises
 * here), then turned into libcurl's options on the easy handle.
 */
#include "http.h"

#include "bounds.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The body limit when opts.max_size is absent: large enough for any
 * response a script holds in one string, small enough to live through a
 * decompression bomb. */
#define DEFAULT_MAX_SIZE ((size_t)1 << 30)

static const char *opt_string(lua_State *L, const char *field, size_t *len) {
  lua_getfield(L, 1, field);
  const char *s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING)
    s = lua_tolstring(L, -1, len);
  else if (!lua_isnil(L, -1))
    px_error_user(L, "bad field '%s' (string expected, got %s)", field, luaL_typename(L, -1));
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
_Static_assert(N_STRING_OPTIONS == PX_HTTP_STRING_OPTIONS, "http.h counts the string options");

/* Read them all (raising for a non-string or an embedded NUL) before
 * anything is allocated; NULL where absent. */
static void opt_strings(lua_State *L, const char *values[]) {
  for (size_t i = 0; i < N_STRING_OPTIONS; i++) {
    size_t len = 0;
    values[i] = opt_string(L, string_options[i].field, &len);
    if (values[i] && strlen(values[i]) != len)
      px_error_user(L, "bad field '%s' (contains a NUL byte)", string_options[i].field);
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
  if (!lua_istable(L, -1)) px_error_user(L, "bad field 'headers' (table expected)");
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    size_t kl = 0, vl = 0;
    if (lua_type(L, -2) == LUA_TNUMBER) {
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
      if (!v || !header_ok(v, vl) || !memchr(v, ':', vl))
        px_error_user(L, "bad header entry (\"Name: value\" string expected)");
      if (vl >= 7 && strncasecmp(v, "expect:", 7) == 0) *has_expect = 1;
    } else {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
      int vt = lua_type(L, -1);
      const char *v = vt == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
      if (vt == LUA_TNUMBER) v = ""; /* converted in build_headers */
      if (!k || !v || kl == 0 || !header_ok(k, kl) || memchr(k, ':', kl) ||
          !header_ok(v, vl))
        px_error_user(L, "bad header (string name and value without CR/LF expected)");
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
      px_error_user(L, "bad field 'timeout' (non-negative number of seconds expected)");
    uint64_t checked;
    if (t > 0 && px_seconds_to_ms(t, &checked) == 1) ms = (long)checked; /* else no limit */
  }
  lua_pop(L, 1);
  return ms;
}

/* opts.max_size: bytes > 0, math.huge for the string limit itself.  A
 * streamed body (sink) is no string: no limit unless one is given. */
static size_t opt_max_size(lua_State *L, int sink) {
  lua_getfield(L, 1, "max_size");
  size_t max = sink ? SIZE_MAX : DEFAULT_MAX_SIZE;
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 1))
      px_error_user(L, "bad field 'max_size' (positive number of bytes expected)");
    if (sink)
      max = n >= 0x1p63 ? SIZE_MAX : (size_t)n;
    else
      max = n >= (lua_Number)PX_IO_MAX_STRING ? PX_IO_MAX_STRING : (size_t)n;
  }
  if (!sink && max > px_io_max_string()) max = px_io_max_string();
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
  if (!lua_istable(L, -1)) px_error_user(L, "bad field 'protocols' (list of scheme names expected)");
  size_t na = 0, nr = 0;
  int n = (int)lua_objlen(L, -1);
  if (n == 0) px_error_user(L, "bad field 'protocols' (empty list)");
  allow[0] = redir[0] = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    size_t len;
    const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int ok = p != NULL && len > 0 && len < 16;
    for (size_t j = 0; ok && j < len; j++) ok = isalnum((unsigned char)p[j]);
    if (!ok || na + len + 2 > size) px_error_user(L, "bad field 'protocols' (entry %d is not a scheme name)", i);
    na += (size_t)snprintf(allow + na, size - na, "%s%s", na ? "," : "", p);
    if (strcasecmp(p, "file") != 0)
      nr += (size_t)snprintf(redir + nr, size - nr, "%s%s", nr ? "," : "", p);
    lua_pop(L, 1);
  }
  if (nr == 0) strcpy(redir, "http,https"); /* file alone never redirects */
  lua_pop(L, 1);
}

/* opts.sink: nil, a function (called by the Lua side with each chunk), or
 * a file path (written here, in C). */
static void opt_sink(lua_State *L, px_http_opts *o) {
  lua_getfield(L, 1, "sink");
  int t = lua_type(L, -1);
  size_t len = 0;
  if (t == LUA_TSTRING) {
    o->sink_path = lua_tolstring(L, -1, &len);
    if (len == 0 || strlen(o->sink_path) != len)
      px_error_user(L, "bad field 'sink' (a file path without NUL bytes expected)");
  } else if (t == LUA_TFUNCTION) {
    o->sink_fn = 1;
  } else if (t != LUA_TNIL) {
    px_error_user(L, "bad field 'sink' (function or file path expected, got %s)", luaL_typename(L, -1));
  }
  lua_pop(L, 1); /* the path stays alive: the table references it */
}

/* Every option px_http_read_opts reads (http.get and http.post check
 * theirs in lua/parx/http.lua). */
static const char *const request_options[] = {
    "body",   "cafile",    "capath", "cert",  "follow",  "headers", "key", "max_size", "method",
    "noproxy", "protocols", "proxy", "sink", "timeout", "url",     "verify", NULL};

void px_http_read_opts(lua_State *L, px_http_opts *o) {
  luaL_checktype(L, 1, LUA_TTABLE);
  px_check_options(L, 1, "http.request", request_options);
  memset(o, 0, sizeof *o);
  size_t url_len = 0, method_len = 0;
  o->url = opt_string(L, "url", &url_len);
  if (!o->url || url_len == 0 || strlen(o->url) != url_len)
    px_error_user(L, "bad field 'url' (non-empty string expected)");
  o->method = opt_string(L, "method", &method_len);
  o->body = opt_string(L, "body", &o->body_len);
  if (o->method && (method_len == 0 || !header_ok(o->method, method_len) || strchr(o->method, ' ')))
    px_error_user(L, "bad field 'method'");
  o->timeout_ms = opt_timeout_ms(L);
  opt_sink(L, o);
  o->max_size = opt_max_size(L, o->sink_path || o->sink_fn);
  opt_protocols(L, o->protocols, o->redir_protocols, sizeof o->protocols);
  o->follow = opt_bool(L, "follow", 1);
  o->verify = opt_bool(L, "verify", 1);
  opt_strings(L, o->strings);
  check_headers(L, &o->has_expect);
}

int px_http_build_headers(lua_State *L, const px_http_opts *o, struct curl_slist **out) {
  if (build_headers(L, out) < 0) return -1;
  if (o->body && !o->has_expect && slist_add(out, "Expect:") < 0) {
    curl_slist_free_all(*out);
    *out = NULL;
    return -1;
  }
  return 0;
}

int px_http_configure(CURL *easy, const px_http_opts *o, struct curl_slist *headers) {
  curl_easy_setopt(easy, CURLOPT_URL, o->url);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, (long)o->follow);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 20L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, (long)o->verify);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "parx/" "0.1");
  for (size_t i = 0; i < N_STRING_OPTIONS; i++)
    if (o->strings[i]) curl_easy_setopt(easy, string_options[i].option, o->strings[i]);
  if (curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, o->protocols) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, o->redir_protocols) != CURLE_OK)
    return UV_EPROTONOSUPPORT;
  if (o->timeout_ms > 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  if (headers) curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  if (o->body) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, o->body);
  }
  const char *method = o->method;
  if (method) {
    if (strcmp(method, "GET") == 0 && !o->body)
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "HEAD") == 0)
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") == 0 && !o->body) {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
      curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, "");
    } else if (strcmp(method, "POST") != 0)
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
  }
  return 0;
}
