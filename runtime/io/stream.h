/*
 * stream.h -- buffered, parking streams over libuv's uv_stream_t (TCP
 * connections today; pipes can use it too).
 *
 * A px_stream is a malloc'd C object owning its libuv handle.  Its Lua face
 * is a userdata holding a pointer to it, metatable "parx.stream", with the
 * methods read([n]), readline(), write(data), shutdown(), close().  The object
 * lives until both the handle's close callback has run and the userdata has
 * been collected (or the creator discarded it without ever pushing it).
 */
#ifndef PX_IO_STREAM_H
#define PX_IO_STREAM_H

#include "../core/px.h"

typedef struct px_stream px_stream;

/* Allocate a stream for vm; its handle is not initialised: call
 * uv_tcp_init / uv_pipe_init on px_stream_handle() next.  NULL when out of
 * memory. */
px_stream *px_stream_new(px_vm *vm);
uv_stream_t *px_stream_handle(px_stream *s);
uv_tcp_t *px_stream_tcp(px_stream *s);

/* Push the Lua userdata for s (once per stream); from then on Lua owns it. */
void px_stream_push(lua_State *L, px_stream *s);

/* Close and free a stream that was never pushed.  The handle must have been
 * initialised. */
void px_stream_discard(px_stream *s);

/* The stream at idx (raises when it is not a stream or is closed). */
px_stream *px_stream_check(lua_State *L, int idx);

/* A scratch buffer for libuv alloc callbacks of this thread: each VM runs
 * on its own thread, and libuv calls read_cb right after alloc_cb, so one
 * buffer per thread is enough.  Readers copy out what they keep. */
void px_io_scratch_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

#endif
