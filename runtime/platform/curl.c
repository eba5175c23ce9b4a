/* curl.c -- libcurl, loaded on first use.
 *
 * Linking libcurl pulls some forty shared libraries (TLS, Kerberos, LDAP,
 * ...) into every process; the dynamic loader then spends most of
 * `parx -e ''` mapping them.  Only parx.http needs curl, so the functions it
 * calls are defined here with curl's own prototypes, under parx's names
 * (curl.h maps curl_x to px_curl_x: libparx exports no curl_* symbol), and
 * forward to the library, opened with dlopen the first time one is called
 * (dlsym looks up curl's own names: #name is not macro-expanded).
 *
 * The variadic setopt/getinfo functions take exactly one argument whose
 * type curl encodes in the option number (CURLOPTTYPE_*): the argument is
 * read as that type and passed on, as curl itself reads it (one reader,
 * forward_setopt, for both setopt functions).
 */
#include "curl.h"
#include "dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

/* curl_easy_setopt and curl_multi_setopt as dlsym finds them (below). */
typedef int (*setopt_fn)(void *, int, ...);

#define CURL_FUNCS(XX)                                                          \
  XX(CURLcode, curl_global_init, (long flags), (flags), CURLE_FAILED_INIT)     \
  XX(CURL *, curl_easy_init, (void), (), NULL)                                 \
  XX(void, curl_easy_cleanup, (CURL * h), (h), )                               \
  XX(const char *, curl_easy_strerror, (CURLcode c), (c), "libcurl is not available") \
  XX(CURLcode, curl_easy_pause, (CURL * h, int bitmask), (h, bitmask), CURLE_FAILED_INIT) \
  XX(CURLM *, curl_multi_init, (void), (), NULL)                               \
  XX(CURLMcode, curl_multi_cleanup, (CURLM * m), (m), CURLM_BAD_HANDLE)        \
  XX(CURLMcode, curl_multi_add_handle, (CURLM * m, CURL * h), (m, h), CURLM_BAD_HANDLE) \
  XX(CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL * h), (m, h), CURLM_BAD_HANDLE) \
  XX(CURLMcode, curl_multi_assign, (CURLM * m, curl_socket_t s, void *p), (m, s, p), CURLM_BAD_HANDLE) \
  XX(CURLMsg *, curl_multi_info_read, (CURLM * m, int *n), (m, n), NULL)        \
  XX(CURLMcode, curl_multi_socket_action, (CURLM * m, curl_socket_t s, int ev, int *running), \
     (m, s, ev, running), CURLM_BAD_HANDLE)                                    \
  XX(const char *, curl_multi_strerror, (CURLMcode c), (c), "libcurl is not available") \
  XX(struct curl_slist *, curl_slist_append, (struct curl_slist * l, const char *s), (l, s), NULL) \
  XX(void, curl_slist_free_all, (struct curl_slist * l), (l), )                \
  XX(curl_version_info_data *, curl_version_info, (CURLversion v), (v), NULL)

static struct {
#define XX(ret, name, params, args, fail) ret(*name) params;
  CURL_FUNCS(XX)
#undef XX
  setopt_fn easy_setopt, multi_setopt;
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  int ok;
} lib;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
  static const px_dl_sym syms[] = {
#define XX(ret, name, params, args, fail) {#name, (void **)&lib.name},
      CURL_FUNCS(XX)
#undef XX
      {"curl_easy_setopt", (void **)&lib.easy_setopt},
      {"curl_easy_getinfo", (void **)&lib.easy_getinfo},
      {"curl_multi_setopt", (void **)&lib.multi_setopt},
      {NULL, NULL}};
  char err[256];
  lib.ok = px_dl_open("libcurl.so.4", RTLD_LOCAL, syms, err, sizeof err) != NULL;
}

static int loaded(void) {
  pthread_once(&once, load);
  return lib.ok;
}

#define XX(ret, name, params, args, fail)                                       \
  ret name params {                                                            \
    if (!loaded()) return fail;                                                \
    return lib.name args;                                                      \
  }
CURL_FUNCS(XX)
#undef XX

/* Read the one argument as the type the option number says and pass it
 * on to fn (CURL and CURLM are void; options and results are enums). */
static int forward_setopt(setopt_fn fn, void *h, int opt, va_list ap) {
  if (opt < CURLOPTTYPE_OBJECTPOINT) return fn(h, opt, va_arg(ap, long));
  if (opt < CURLOPTTYPE_FUNCTIONPOINT) return fn(h, opt, va_arg(ap, void *));
  if (opt < CURLOPTTYPE_OFF_T) return fn(h, opt, va_arg(ap, void (*)(void)));
  if (opt < CURLOPTTYPE_BLOB) return fn(h, opt, va_arg(ap, curl_off_t));
  return fn(h, opt, va_arg(ap, void *));
}

/* curl_easy_setopt and curl_multi_setopt: the one argument, read by
 * forward_setopt, to lib.fn. */
#define SETOPT(ret, name, handle, option, fn, fail)                             \
  ret name(handle *h, option opt, ...) {                                       \
    if (!loaded()) return fail;                                                \
    va_list ap;                                                                \
    va_start(ap, opt);                                                         \
    int r = forward_setopt(lib.fn, h, (int)opt, ap);                           \
    va_end(ap);                                                                \
    return (ret)r;                                                             \
  }
SETOPT(CURLcode, curl_easy_setopt, CURL, CURLoption, easy_setopt, CURLE_FAILED_INIT)
SETOPT(CURLMcode, curl_multi_setopt, CURLM, CURLMoption, multi_setopt, CURLM_BAD_HANDLE)
#undef SETOPT

/* Every CURLINFO takes a pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...) {
  if (!loaded()) return CURLE_FAILED_INIT;
  va_list ap;
  va_start(ap, info);
  void *p = va_arg(ap, void *);
  va_end(ap);
  return lib.easy_getinfo(h, info, p);
}
