/*
 * http.h -- what http.c (the transfers, libcurl's multi interface on the
 * VM's loop) and http_opts.c (a request's options, read and checked, and
 * the easy handle set from them) share.
 */
#ifndef PX_IO_HTTP_H
#define PX_IO_HTTP_H

#include "../core/px.h"

#include "platform/curl.h" /* libcurl under px_curl_* names */

/* Options that are one string handed to libcurl: TLS files and the proxy. */
#define PX_HTTP_STRING_OPTIONS 6

/* A request's options as http_opts.c read them from the table at index 1.
 * The strings point into that table (alive while it is on the stack). */
typedef struct px_http_opts {
  const char *url, *method, *body;
  size_t body_len;
  long timeout_ms;  /* 0: no limit */
  size_t max_size;  /* the body's limit */
  int follow, verify;
  int has_expect;   /* the caller set Expect: itself */
  const char *strings[PX_HTTP_STRING_OPTIONS]; /* NULL where absent */
  char protocols[256], redir_protocols[256];
  /* opts.sink: a file path (sink_path), or a function (sink_fn set; the
   * Lua side calls it), or neither. */
  const char *sink_path;
  int sink_fn;
} px_http_opts;

/* Read and check every option; raises on misuse and allocates nothing, so
 * it comes before anything that must be freed. */
void px_http_read_opts(lua_State *L, px_http_opts *o);

/* The headers of opts.headers (checked by px_http_read_opts) as a
 * curl_slist, plus "Expect:" when a body is sent and the caller set none;
 * -1 when out of memory, with nothing allocated. */
int px_http_build_headers(lua_State *L, const px_http_opts *o, struct curl_slist **out);

/* Set the easy handle's options from o and headers (not the callbacks):
 * 0, or UV_EPROTONOSUPPORT when libcurl refuses the protocol list. */
int px_http_configure(CURL *easy, const px_http_opts *o, struct curl_slist *headers);

#endif
