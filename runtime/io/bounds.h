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

/* Seconds (a Lua number) to whole milliseconds for a timeout option:
 * returns 0 for "no limit" (math.huge, or anything beyond 1e12 s, which
 * is over 30,000 years), else at least 1.  The caller has checked that
 * s > 0 and is not NaN; the conversion never overflows. */
unsigned long long px_io_timeout_ms(double s);

#endif
