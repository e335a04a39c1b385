//! The heap's lock and the state behind it, boxed so that its address
//! stays put for the fork registry (see `fork.rs`) however the `Heap`
//! moves; and the hooks through which the registry holds the lock across
//! `fork()` and re-initialises it in the child.

use std::cell::UnsafeCell;

use lock_api::{Mutex, RawMutex};

use super::allocator::State;
use super::{fork, reentry};

/// A shard's state, locked by this thread ([`Locked::enter`]).
pub(super) struct ShardGuard<'a, L: RawMutex> {
    guard: std::mem::ManuallyDrop<lock_api::MutexGuard<'a, L, State>>,
}

impl<L: RawMutex> std::ops::Deref for ShardGuard<'_, L> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl<L: RawMutex> std::ops::DerefMut for ShardGuard<'_, L> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl<L: RawMutex> Drop for ShardGuard<'_, L> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here: the lock is released before the
        // frees deferred under it run (they take it again).
        unsafe { std::mem::ManuallyDrop::drop(&mut self.guard) };
        reentry::leave();
    }
}

/// A heap shard's state behind its lock, boxed so that its address stays
/// put for the fork registry (see `fork.rs`) however the `Heap` moves.
/// Aligned to 128 bytes (two cache lines, the unit adjacent-line
/// prefetchers fetch), so that shards next to each other share no line:
/// otherwise one thread's counters and another's lock word would bounce
/// between cores.
#[repr(align(128))]
pub(super) struct Locked<L: RawMutex> {
    /// Replaced (re-initialised) only by the fork child handler, when the
    /// child has one thread and no reference to it is in use.
    pub(super) mutex: UnsafeCell<Mutex<L, State>>,
    /// In the fork registry (the lock is `Sync`).
    pub(super) registered: bool,
}

// SAFETY: `Locked` is the mutex plus a flag; the cell is written only by the
// fork child handler (see the field), so the mutex's own auto traits hold.
unsafe impl<L: RawMutex> Sync for Locked<L> where Mutex<L, State>: Sync {}
// SAFETY: as above.
unsafe impl<L: RawMutex> Send for Locked<L> where Mutex<L, State>: Send {}

impl<L: RawMutex> Locked<L> {
    #[inline]
    fn mutex(&self) -> &Mutex<L, State> {
        // SAFETY: only the fork child handler writes the cell, when no
        // reference to it is in use (see the field).
        unsafe { &*self.mutex.get() }
    }

    /// Locks the shard, or `None` when this thread already holds its lock
    /// (re-entered from an allocator or a signal handler: `reentry.rs`),
    /// which waiting for would never end.
    #[inline]
    pub(super) fn enter(&self) -> Option<ShardGuard<'_, L>> {
        if !reentry::arrive(std::ptr::from_ref(self).cast()) {
            return None;
        }
        Some(ShardGuard {
            guard: std::mem::ManuallyDrop::new(self.mutex().lock()),
        })
    }

    /// Before `fork()`: takes the lock, so no operation is half done in the
    /// copy; the parent or child handler ends it.
    pub(super) unsafe fn fork_prepare(this: *const ()) {
        // SAFETY: registered heaps are alive until they unregister, which
        // waits for the fork handlers (the registry's lock).
        let this = unsafe { &*this.cast::<Self>() };
        std::mem::forget(this.mutex().lock());
    }

    /// In the parent after `fork()`: releases what `fork_prepare` took.
    pub(super) unsafe fn fork_parent(this: *const ()) {
        // SAFETY: as in `fork_prepare`.
        let this = unsafe { &*this.cast::<Self>() };
        // SAFETY: `fork_prepare` took the lock on this thread and forgot
        // the guard.
        unsafe { this.mutex().force_unlock() };
    }

    /// In the child after `fork()`: a fresh lock around the same state
    /// (consistent: `fork_prepare` held the lock across the copy).
    pub(super) unsafe fn fork_child(this: *const ()) {
        // SAFETY: as in `fork_prepare`; the child has one thread, this one,
        // and no reference to the mutex is in use, so replacing it in the
        // cell is exclusive. `into_inner` takes the state without locking.
        unsafe {
            let cell = (*this.cast::<Self>()).mutex.get();
            let state = std::ptr::read(cell).into_inner();
            std::ptr::write(cell, Mutex::new(state));
        }
    }
}

impl<L: RawMutex> Drop for Locked<L> {
    fn drop(&mut self) {
        if self.registered {
            fork::unregister(std::ptr::from_ref(self).cast());
        }
    }
}
