/* dl.c -- see dl.h. */
#include "dl.h"

#include <dlfcn.h>
#include <stdio.h>

void *px_dl_open(const char *soname, int flags, const px_dl_sym *syms, char *err, size_t errlen) {
  void *h = dlopen(soname, RTLD_NOW | flags);
  if (!h) {
    const char *why = dlerror();
    snprintf(err, errlen, "%s", why ? why : "cannot open it");
    return NULL;
  }
  for (const px_dl_sym *s = syms; s->name; s++) {
    if ((*s->slot = dlsym(h, s->name)) != NULL) continue;
    snprintf(err, errlen, "%s has no %s", soname, s->name);
    for (const px_dl_sym *t = syms; t->name; t++) *t->slot = NULL;
    dlclose(h);
    return NULL;
  }
  return h;
}
