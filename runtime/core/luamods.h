/* luamods.h -- the Lua layer (every lua/parx file) compiled to bytecode and linked
 * in.  The Makefile generates the table (build/gen/luamods.c). */
#ifndef PX_LUAMODS_H
#define PX_LUAMODS_H
#include <stddef.h>

typedef struct px_luamod {
  const char *name; /* module name, e.g. "parx.pool"; NULL ends the table */
  const unsigned char *code;
  size_t size;
} px_luamod;

extern const px_luamod px_luamods[];
#endif
