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

/// What this thread holds and owes, in one thread-local (one address to
/// find on each lock and unlock).
struct Reentry {
    /// The shard locks held, innermost last.
    held: [Cell<*const ()>; HELD_MAX],
    depth: Cell<usize>,
    /// Frees kept for when `depth` is back to 0.
    deferred: [Cell<Option<Deferred>>; DEFERRED_MAX],
    pending: Cell<usize>,
}

thread_local! {
    static THIS_THREAD: Reentry = const {
        Reentry {
            held: [const { Cell::new(std::ptr::null()) }; HELD_MAX],
            depth: Cell::new(0),
            deferred: [const { Cell::new(None) }; DEFERRED_MAX],
            pending: Cell::new(0),
        }
    };
}

/// Records that this thread is about to take the lock at `lock`: `false`
/// (nothing recorded) when it already holds it, or holds too many.
#[inline]
pub(super) fn arrive(lock: *const ()) -> bool {
    THIS_THREAD.with(|t| {
        let depth = t.depth.get();
        if depth > 0 && (depth == HELD_MAX || t.held[..depth].iter().any(|h| h.get() == lock)) {
            return false;
        }
        t.held[depth].set(lock);
        t.depth.set(depth + 1);
        true
    })
}

/// Records that this thread released the lock it took last; after the
/// outermost one, does the frees deferred meanwhile.
#[inline]
pub(super) fn leave() {
    let deferred = THIS_THREAD.with(|t| {
        let depth = t.depth.get() - 1;
        t.depth.set(depth);
        depth == 0 && t.pending.get() > 0
    });
    if deferred {
        run_deferred();
    }
}

/// Keeps `free` for when this thread leaves its outermost lock. Returns
/// false (and the free is not done: its memory stays in use) when
/// [`DEFERRED_MAX`] are pending already.
pub(super) fn defer(free: Deferred) -> bool {
    THIS_THREAD.with(|t| {
        let n = t.pending.get();
        if n == DEFERRED_MAX {
            return false;
        }
        t.deferred[n].set(Some(free));
        t.pending.set(n + 1);
        true
    })
}

#[cold]
#[inline(never)]
fn run_deferred() {
    while let Some(free) = THIS_THREAD.with(|t| {
        let n = t.pending.get().checked_sub(1)?;
        t.pending.set(n);
        t.deferred[n].take()
    }) {
        // SAFETY: `defer`'s caller made `free` for its heap, which outlives
        // its allocations, and the free was not done.
        unsafe { (free.run)(free.heap, free.args) };
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
