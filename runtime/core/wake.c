/* wake.c -- reaching a VM from any thread: post to its inbox, wake a
 * parked task, poke its loop, hold it busy for external work; and the
 * VM's accessors for modules (px.h).  Below the scheduler and the drive
 * loop (vm.c), which consume what arrives here: nothing here calls them.
 *
 * A post adds one unit to rt->pending before it is enqueued (vm.c's
 * comment on quiescence says why); the VM that drains it settles it. */
#include "core.h"

px_runtime *px_vm_runtime(px_vm *vm) { return vm->rt; }
uv_loop_t *px_vm_loop(px_vm *vm) { return &vm->loop; }
lua_State *px_vm_state(px_vm *vm) { return vm->L; }
int px_vm_id(px_vm *vm) { return vm->id; }
/* vm->thread is read by any thread (a wake asks whether it runs on the
 * VM's own) while an embedding host may drive the main VM from another:
 * relaxed atomics (a thread that finds itself there wrote it itself). */
int px_vm_on_thread(px_vm *vm) {
  return pthread_equal(__atomic_load_n(&vm->thread, __ATOMIC_RELAXED), pthread_self());
}

void px_vm_set_thread(px_vm *vm) {
  pthread_t self = pthread_self();
  if (!pthread_equal(__atomic_load_n(&vm->thread, __ATOMIC_RELAXED), self))
    __atomic_store_n(&vm->thread, self, __ATOMIC_RELAXED);
}

int px_vm_has_work(px_vm *vm) {
  return vm->ready_head || vm->wakes_head || __atomic_load_n(&vm->inbox_head, __ATOMIC_RELAXED);
}

void px_vm_hold(px_vm *vm) { atomic_fetch_add(&vm->holds, 1); }

void px_vm_release(px_vm *vm) {
  atomic_fetch_sub(&vm->holds, 1);
  /* The release itself is usually followed by a px_wake; if not, make the
   * VM re-examine its idleness. */
  if (!px_vm_on_thread(vm)) uv_async_send(&vm->async);
}

void px_vm_poke(px_vm *vm) { uv_async_send(&vm->async); }

void px_vm_post(px_vm *vm, px_wait *w) {
  px_runtime *rt = vm->rt;
  w->next = NULL;
  atomic_fetch_add(&rt->pending, 1);
  pthread_mutex_lock(&vm->inbox_lock);
  if (vm->inbox_tail) vm->inbox_tail->next = w;
  else __atomic_store_n(&vm->inbox_head, w, __ATOMIC_RELEASE);
  vm->inbox_tail = w;
  pthread_mutex_unlock(&vm->inbox_lock);
  /* A VM that is running or spinning drains its inbox by itself; only one
   * that sleeps in its loop needs the eventfd write (a syscall, and the
   * other thread's epoll wake-up).  Pairs with block(): either it sees the
   * post before sleeping, or this sees it asleep. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&vm->asleep)) uv_async_send(&vm->async);
}

void px_wake(px_wait *w) {
  px_vm *vm = w->vm;
  if (px_vm_on_thread(vm)) {
    w->armed = 2; /* woken, delivery pending: a cancel must not detach it */
    w->next = NULL;
    if (vm->wakes_tail) vm->wakes_tail->next = w;
    else vm->wakes_head = w;
    vm->wakes_tail = w;
    /* A wake from a libuv callback that runs before this iteration's poll
     * (timers run first) must not let the poll block: with no other timer
     * pending and a socket keeping the loop alive it would block forever.
     * uv_stop makes the poll non-blocking and ends uv_run after this
     * iteration; libuv clears the flag when uv_run returns.  Only inside
     * uv_run: a stale flag would cut the next run short. */
    if (vm->in_uv_run) uv_stop(&vm->loop);
  } else {
    px_vm_post(vm, w);
  }
}

