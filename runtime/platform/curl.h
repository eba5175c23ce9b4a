/* curl.h -- libcurl under parx's own names, for runtime/io/http.c.
 *
 * curl.c defines the libcurl functions parx uses and opens libcurl.so.4 on
 * first use.  So that libparx never defines a curl_* symbol (a host or a
 * Lua C module that links libcurl would bind to parx's shims, or clash with
 * them), the shims are called px_curl_*: this header maps each curl name to
 * its px_curl_ twin before <curl/curl.h> declares it, the way zlib's
 * Z_PREFIX maps deflate to z_deflate.  http.c keeps writing curl's names, as
 * curl's documentation does; the symbols it links to are parx's.  Include
 * this instead of <curl/curl.h>.  A curl function missing below would link
 * to no definition at all (the parx binary fails to link): add it here and
 * to CURL_FUNCS in curl.c.
 *
 * curl's compile-time option checks (typecheck-gcc.h) are macros named
 * after the functions and cannot sit beside these renames: they are off.
 */
#ifndef PX_PLATFORM_CURL_H
#define PX_PLATFORM_CURL_H

#define CURL_DISABLE_TYPECHECK 1

#define curl_global_init px_curl_global_init
#define curl_easy_init px_curl_easy_init
#define curl_easy_cleanup px_curl_easy_cleanup
#define curl_easy_strerror px_curl_easy_strerror
#define curl_easy_setopt px_curl_easy_setopt
#define curl_easy_getinfo px_curl_easy_getinfo
#define curl_easy_pause px_curl_easy_pause
#define curl_multi_init px_curl_multi_init
#define curl_multi_cleanup px_curl_multi_cleanup
#define curl_multi_add_handle px_curl_multi_add_handle
#define curl_multi_remove_handle px_curl_multi_remove_handle
#define curl_multi_assign px_curl_multi_assign
#define curl_multi_info_read px_curl_multi_info_read
#define curl_multi_socket_action px_curl_multi_socket_action
#define curl_multi_strerror px_curl_multi_strerror
#define curl_multi_setopt px_curl_multi_setopt
#define curl_slist_append px_curl_slist_append
#define curl_slist_free_all px_curl_slist_free_all
#define curl_version_info px_curl_version_info

#include <curl/curl.h>

/* <curl/curl.h> ends by redefining the three variadic ones as function-like
 * macros that call curl's names (to insist on exactly three arguments):
 * point them back at the shims. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_easy_setopt px_curl_easy_setopt
#define curl_easy_getinfo px_curl_easy_getinfo
#define curl_multi_setopt px_curl_multi_setopt

#endif
