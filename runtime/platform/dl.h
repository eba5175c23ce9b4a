/* dl.h -- a shared library opened on first use: the one loader of the
 * libraries parx does not link (libcurl, OpenBLAS, libmpi, libedit), so
 * that `parx -e ''` maps none of them. */
#ifndef PX_DL_H
#define PX_DL_H

#include <stddef.h>

/* One symbol to look up and where its address goes; a table of them ends
 * with a NULL name. */
typedef struct px_dl_sym {
  const char *name;
  void **slot;
} px_dl_sym;

/* dlopen(soname, RTLD_NOW | flags) and fill every slot of syms.  Returns
 * the handle, or NULL with the reason in err (dlerror's text, or "SONAME
 * has no NAME"); on a missing symbol the library is closed again and every
 * slot is NULL. */
void *px_dl_open(const char *soname, int flags, const px_dl_sym *syms, char *err, size_t errlen);

#endif
