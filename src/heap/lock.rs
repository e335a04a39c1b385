//! The locks a [`Heap`](crate::Heap) can use.

use std::cell::Cell;

use lock_api::{GuardNoSend, RawMutex};

/// The lock of [`Heap::new`](crate::Heap::new) and of the global default
/// heap: `parking_lot`'s small, fast mutex.
pub type DefaultLock = parking_lot::RawMutex;

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
