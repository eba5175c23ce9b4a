/*
 * chan_buffer.h -- a channel's buffers (chan_buffer.c): the ring under the
 * lock, and the lock-free cells with the values put back in front and an
 * unbounded channel's overflow.  Used by chan_queue.c only.
 */
#ifndef PX_CHAN_BUFFER_H
#define PX_CHAN_BUFFER_H

#include "chan.h"

/* docs/channels.md: "48 bytes a value" */
_Static_assert(sizeof(px_vcell) == 48, "a cell is 48 bytes");

#define VQ_CLOSED ((uint64_t)1 << 63)
#define VQ_SENDERS ((uint64_t)1 << 62)
#define VQ_POS (VQ_SENDERS - 1)

enum { VQ_EMPTY, VQ_GOT, VQ_WRITING, VQ_NOT_PLAIN };

/* The ring (ch->lock held): push (0, -1 out of memory), push in front
 * (may exceed the capacity by one), pop.  A message in a buffer does not
 * count its references to the channel itself (weaken/strengthen). */
int px_ring_push(px_chan *ch, px_slot *v);
int px_ring_push_front(px_chan *ch, px_slot *v);
void px_ring_pop(px_chan *ch, px_slot *out);
void px_weaken_self(px_chan *ch, px_slot *v);
void px_strengthen_self(px_chan *ch, px_slot *v);

/* The lock-free cells (chan_buffer.c says how they work). */
px_vcell *px_vq_cells(px_chan *ch);
int px_vq_alloc(px_chan *ch);
int px_vq_push(px_chan *ch, px_slot *v, int locked, uint64_t *n);
int px_vq_pop(px_chan *ch, px_slot *out, int plain_only, uint64_t *n);
int px_vq_has_room(px_chan *ch);
int px_vq_push_locked(px_chan *ch, px_slot *v, uint64_t *n);
void px_front_push(px_chan *ch, px_slot *v, uint64_t n);
int px_overflow_push(px_chan *ch, px_slot *v);
void px_overflow_pop(px_chan *ch, px_slot *out);
int px_pop_any(px_chan *ch, px_slot *out, int plain_only, uint64_t *n);

#endif
