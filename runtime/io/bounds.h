/*
 * bounds.h -- bounds shared by the IO modules.
 *
 * LuaJIT cannot make a string longer than LJ_MAX_STR (0x7fffff00 bytes,
 * just under 2 GiB); lua_pushlstring past it raises "string length
 * overflow", which inside a deliver() would not even be a clean Lua error.
 * Every IO result that becomes one Lua string (fs.readfile, file:read,
 * process.exec output, a pipe's read("a"), stream reads, an HTTP body) is
 * checked against px_io_max_string() where it is collected and ends in
 * nil, "EFBIG: ...", "EFBIG" instead.
 */
#ifndef PX_IO_BOUNDS_H
#define PX_IO_BOUNDS_H

#include <stddef.h>

#define PX_IO_MAX_STRING ((size_t)0x7fffff00)

/* PX_IO_MAX_STRING, or a smaller value from the environment variable
 * PARX_TEST_MAX_STRING (read once per process): specs use it to reach the
 * limit with megabytes instead of gigabytes.  It can only lower the limit. */
size_t px_io_max_string(void);

/* Timeouts (math.huge is no limit) go through the core's checked
 * px_seconds_to_ms (px.h). */

#endif
