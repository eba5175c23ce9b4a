/* editline.c -- libedit, opened when the REPL meets a terminal.
 *
 * Linking libedit loads it and the three libraries it needs (libbsd,
 * libmd, libtinfo) into every parx process, and into every host of
 * libparx; mapping and relocating them was an eighth of `parx -e ''`.
 * Only the interactive loop on a terminal edits lines, so the functions
 * and variables it uses are looked up here, the first time, by their
 * readline-compatible names (the types come from libedit's own header).
 */
#include <dlfcn.h>

#include "../platform/dl.h"
#include "cli.h"

const px_editline *px_editline_open(char *err, size_t errlen) {
  static px_editline ed; /* the REPL opens it once per process */
  static const px_dl_sym syms[] = {
#define SYM(field, name) {name, (void **)&ed.field},
      PX_EDITLINE_SYMS(SYM)
#undef SYM
      {NULL, NULL}};
  return px_dl_open("libedit.so.2", RTLD_LOCAL, syms, err, errlen) ? &ed : NULL;
}
