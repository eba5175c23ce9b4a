/* modules.c -- the one list of parx's C modules, as Lua's linit.c is the
 * one list of its libraries.  Each is preloaded in every VM as
 * package.preload["parx.c.<name>"]; the Lua layer (lua/parx/<name>.lua)
 * requires it.  The core never names a module: the embedding API passes
 * this list when it opens the runtime.  A new module: its file (mod/, io/,
 * gpu/, mpi/) and one line below. */
#include "modules.h"

#define MODULES(XX)                                                           \
  XX(task) XX(pool) XX(chan) XX(sync) XX(array) XX(timer) XX(fs) XX(tcp)     \
  XX(udp) XX(dns) XX(process) XX(signal) XX(http) XX(gpu) XX(debug) XX(dict) \
  XX(mpi) XX(trace)

#define XX(name) int px_open_##name(lua_State *L);
MODULES(XX)
#undef XX

const px_module px_modules[] = {
#define XX(name) {"parx.c." #name, px_open_##name},
    MODULES(XX)
#undef XX
    {NULL, NULL}};
