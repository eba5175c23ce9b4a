/*
 * queue.h -- px_container_of and an intrusive doubly linked queue.
 *
 * The same two tools libuv keeps in uv-common.h and queue.h: a struct that
 * is on a list embeds a px_queue link, and the code that walks the list gets
 * back to the struct with px_container_of.  Nothing is allocated to link or
 * unlink, every operation is O(1), and one struct can sit on several lists
 * through several links.  A queue is a circular list whose head is a bare
 * px_queue: an empty queue points at itself.
 *
 *   typedef struct job { px_queue link; int id; } job;
 *   px_queue q;                       px_queue_init(&q);
 *   px_queue_insert_tail(&q, &j->link);
 *   while (!px_queue_empty(&q)) {
 *     job *j = px_container_of(px_queue_head(&q), job, link);
 *     px_queue_remove(&j->link);      ...
 *   }
 *
 * px_queue_remove leaves the link pointing at itself, so
 * px_queue_linked(link) says whether the struct is on some queue: no
 * separate "queued" flag to keep in step.  Links must be initialised
 * (px_queue_init) before the first px_queue_linked.
 */
#ifndef PX_CORE_QUEUE_H
#define PX_CORE_QUEUE_H

#include <assert.h>
#include <stddef.h>

/* The struct of type `type` whose member `member` is at ptr. */
#define px_container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct px_queue {
  struct px_queue *next, *prev;
} px_queue;

static inline void px_queue_init(px_queue *q) { q->next = q->prev = q; }

static inline int px_queue_empty(const px_queue *q) { return q->next == q; }

/* 1 if the link q is on a queue (it was initialised, then inserted). */
static inline int px_queue_linked(const px_queue *q) { return q->next != q; }

/* The first link of a non-empty queue. */
static inline px_queue *px_queue_head(const px_queue *q) {
  assert(!px_queue_empty(q));
  return q->next;
}

static inline void px_queue_insert_tail(px_queue *h, px_queue *q) {
  q->next = h;
  q->prev = h->prev;
  q->prev->next = q;
  h->prev = q;
}

/* Unlink q from its queue; q is left unlinked (points at itself). */
static inline void px_queue_remove(px_queue *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  q->next = q->prev = q;
}

#endif
