//! A thread that enters a heap it is already inside: a `#[global_allocator]`
//! that makes or drops a thunk while the heap allocates under a shard's
//! lock, or a signal handler that does so while the thread it interrupted
//! holds one. Taking that lock again would wait for itself forever (or, on
//! a `NoLock` heap, panic).
//!
//! Each thread keeps the shard locks it holds in `HELD` (a thread holds
//! one at a time in the heap's own code; a few more when an allocator or a
//! signal handler nests). [`Locked::enter`](super::locked::Locked::enter)
//! refuses a lock this thread already holds instead of waiting: a nested
//! creation then fails with [`Error::HeapUnavailable`] (see
//! [`reentered`]), and a nested free is [`defer`]red: kept in a small
//! per-thread list without allocating, and done when the thread leaves
//! its outermost lock. Past [`DEFERRED_MAX`] pending frees the rest are
//! leaked (their memory stays in use; nothing is freed twice).
//!
//! The thread-locals have no destructor: readable at any point of a
//! thread's life, signal handlers included.

use std::cell::Cell;

use crate::error::Error;

/// The most shard locks one thread holds at once (nested entries past
/// this are refused like a re-entry).
const HELD_MAX: usize = 4;

/// The most frees one thread keeps for later.
pub(super) const DEFERRED_MAX: usize = 32;

/// The words a deferred free keeps of what it frees.
pub(super) const ARGS: usize = 6;

/// A free to do later: `run(heap, args)`.
#[derive(Clone, Copy)]
pub(super) struct Deferred {
    pub(super) run: unsafe fn(*const (), [usize; ARGS]),
    pub(super) heap: *const (),
    pub(super) args: [usize; ARGS],
}

thread_local! {
    static HELD: [Cell<*const ()>; HELD_MAX] =
        const { [const { Cell::new(std::ptr::null()) }; HELD_MAX] };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    static DEFERRED: [Cell<Option<Deferred>>; DEFERRED_MAX] =
        const { [const { Cell::new(None) }; DEFERRED_MAX] };
    static PENDING: Cell<usize> = const { Cell::new(0) };
}

/// Records that this thread is about to take the lock at `lock`: `false`
/// (nothing recorded) when it already holds it, or holds too many.
#[inline]
pub(super) fn arrive(lock: *const ()) -> bool {
    let depth = DEPTH.get();
    if depth > 0 && HELD.with(|held| held[..depth].iter().any(|h| h.get() == lock)) {
        return false;
    }
    if depth == HELD_MAX {
        return false;
    }
    HELD.with(|held| held[depth].set(lock));
    DEPTH.set(depth + 1);
    true
}

/// Records that this thread released the lock it took last; after the
/// outermost one, does the frees deferred meanwhile.
#[inline]
pub(super) fn leave() {
    let depth = DEPTH.get() - 1;
    DEPTH.set(depth);
    if depth == 0 && PENDING.get() > 0 {
        run_deferred();
    }
}

/// Keeps `free` for when this thread leaves its outermost lock. Returns
/// false (and the free is not done: its memory stays in use) when
/// [`DEFERRED_MAX`] are pending already.
pub(super) fn defer(free: Deferred) -> bool {
    let n = PENDING.get();
    if n == DEFERRED_MAX {
        return false;
    }
    DEFERRED.with(|list| list[n].set(Some(free)));
    PENDING.set(n + 1);
    true
}

#[cold]
#[inline(never)]
fn run_deferred() {
    while PENDING.get() > 0 {
        let n = PENDING.get() - 1;
        PENDING.set(n);
        if let Some(free) = DEFERRED.with(|list| list[n].take()) {
            // SAFETY: `defer`'s caller made `free` for its heap, which
            // outlives its allocations, and the free was not done.
            unsafe { (free.run)(free.heap, free.args) };
        }
    }
}

/// The error of a creation that would wait for a lock this thread holds.
pub(super) fn reentered() -> Error {
    Error::HeapUnavailable {
        reason: "this thread is already inside this heap (a global allocator or a signal \
                 handler made a thunk while the heap was working on this thread); the nested \
                 creation cannot wait for itself",
    }
}
