/* errors_api.c -- parx_strerror: the embedding API's results (parx.h) read
 * from the runtime's one error table (PX_ERRNO_MAP in core/px.h).
 *
 * parx.h's PARX_* numbers are public and stay as they are (-1 .. -7); each
 * names an entry of the table, so a host prints the same text parx does.
 */
#include "core/px.h"
#include "parx.h"

/* The table's code for a PARX_* result, or 0 when r is not one. */
static int table_code(int r) {
  switch (r) {
  case PARX_ERRRUN: return PX_ERUN;
  case PARX_ERRSYNTAX: return PX_ESYNTAX;
  case PARX_ERRFILE: return PX_EFILE;
  case PARX_ERRMEM: return UV_ENOMEM;
  case PARX_EXIT: return PX_EEXIT;
  case PARX_ERRDEADLOCK: return PX_EDEADLOCK;
  case PARX_ERRPANIC: return PX_EPANIC;
  default: return 0;
  }
}

const char *parx_strerror(int result) {
  if (result == PARX_OK) return "no error";
  int code = table_code(result);
  return code ? px_strerror(code) : "unknown result";
}
