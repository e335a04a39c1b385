//! The locks a [`Heap`](crate::Heap) can use.

use std::cell::Cell;

use lock_api::{GuardNoSend, RawMutex};

use crate::sys;

/// The lock of [`Heap::new`](crate::Heap::new) and of the global default
/// heap: a small, fast mutex that stays usable in a child of `fork()`.
///
/// On Linux it is the futex mutex of Rust's standard library (through the
/// `rustix-futex-sync` crate, which implements [`RawMutex`] for it): its whole
/// state is one word and its waiters are known only to the kernel, so a
/// child that re-initialises it (as the fork handlers do) inherits no
/// waiter it cannot wake. A lock that keeps waiters in a process-wide queue,
/// as `parking_lot`'s does, is not like that: in a child the queue still
/// links the parent's threads, and glibc hands their stacks (where the queue
/// entries live) to the child's new threads, which corrupts it. Other
/// platforms use `parking_lot`'s mutex (they have no code heap to fork).
pub struct DefaultLock(sys::RawLock);

impl std::fmt::Debug for DefaultLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultLock").finish_non_exhaustive()
    }
}

// SAFETY: every operation is the inner mutex's, itself a correct `RawMutex`.
unsafe impl RawMutex for DefaultLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: DefaultLock = DefaultLock(<sys::RawLock as RawMutex>::INIT);

    type GuardMarker = GuardNoSend;

    #[inline]
    fn lock(&self) {
        self.0.lock();
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.0.try_lock()
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock, as `RawMutex::unlock` requires.
        unsafe { self.0.unlock() }
    }
}

/// No lock: for a heap used by one thread only.
///
/// `NoLock` is `Send` but not `Sync`, so a `Heap<NoLock>` is not `Sync` and
/// the compiler keeps it (and everything allocated from it) on one thread.
/// It still refuses to be taken twice (it panics instead of handing out a
/// second `&mut`), which wxthunk never does.
///
/// ```compile_fail
/// let heap = wxthunk::Heap::unlocked()?;
/// std::thread::scope(|s| {
///     s.spawn(|| heap.alloc(16)); // error: `NoLock` cannot be shared between threads
/// });
/// # Ok::<(), wxthunk::Error>(())
/// ```
#[derive(Debug)]
pub struct NoLock {
    locked: Cell<bool>,
}

// SAFETY: `NoLock` is not `Sync`, so it is only ever used from one thread;
// the flag makes a second `lock` while held panic rather than succeed, so
// holding it is exclusive.
unsafe impl RawMutex for NoLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: NoLock = NoLock {
        locked: Cell::new(false),
    };

    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        assert!(self.try_lock(), "wxthunk: NoLock taken twice on one thread");
    }

    fn try_lock(&self) -> bool {
        !self.locked.replace(true)
    }

    unsafe fn unlock(&self) {
        self.locked.set(false);
    }
}
