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
 * read as that type and passed on, as curl itself reads it.
 */
#include "curl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

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
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  int ok;
} lib;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
  void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!h) return;
  int ok = 1;
#define XX(ret, name, params, args, fail) ok &= (*(void **)&lib.name = dlsym(h, #name)) != NULL;
  CURL_FUNCS(XX)
#undef XX
  ok &= (*(void **)&lib.easy_setopt = dlsym(h, "curl_easy_setopt")) != NULL;
  ok &= (*(void **)&lib.easy_getinfo = dlsym(h, "curl_easy_getinfo")) != NULL;
  ok &= (*(void **)&lib.multi_setopt = dlsym(h, "curl_multi_setopt")) != NULL;
  lib.ok = ok;
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

/* Read the one argument as the type the option number says, pass it on. */
#define FORWARD_TYPED(call, opt, ap)                                            \
  do {                                                                         \
    if ((opt) < CURLOPTTYPE_OBJECTPOINT) {                                     \
      long v_ = va_arg(ap, long);                                              \
      r = call(v_);                                                            \
    } else if ((opt) < CURLOPTTYPE_FUNCTIONPOINT) {                            \
      void *v_ = va_arg(ap, void *);                                           \
      r = call(v_);                                                            \
    } else if ((opt) < CURLOPTTYPE_OFF_T) {                                    \
      void (*v_)(void) = va_arg(ap, void (*)(void));                           \
      r = call(v_);                                                            \
    } else if ((opt) < CURLOPTTYPE_BLOB) {                                     \
      curl_off_t v_ = va_arg(ap, curl_off_t);                                  \
      r = call(v_);                                                            \
    } else {                                                                   \
      void *v_ = va_arg(ap, void *);                                           \
      r = call(v_);                                                            \
    }                                                                          \
  } while (0)

CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...) {
  if (!loaded()) return CURLE_FAILED_INIT;
  CURLcode r;
  va_list ap;
  va_start(ap, opt);
#define CALL(v) lib.easy_setopt(h, opt, v)
  FORWARD_TYPED(CALL, opt, ap);
#undef CALL
  va_end(ap);
  return r;
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption opt, ...) {
  if (!loaded()) return CURLM_BAD_HANDLE;
  CURLMcode r;
  va_list ap;
  va_start(ap, opt);
#define CALL(v) lib.multi_setopt(m, opt, v)
  FORWARD_TYPED(CALL, opt, ap);
#undef CALL
  va_end(ap);
  return r;
}

/* Every CURLINFO takes a pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...) {
  if (!loaded()) return CURLE_FAILED_INIT;
  va_list ap;
  va_start(ap, info);
  void *p = va_arg(ap, void *);
  va_end(ap);
  return lib.easy_getinfo(h, info, p);
}
