//! [`Owner`]: the address of the heap that owns a region or a trampoline
//! table, kept beside them so that a thunk's handle need not hold it (the
//! handle keeps only its function pointer and one word: `thunk/handle.rs`).
//!
//! A heap cannot move while a thunk borrows it, so every live thunk of a
//! heap was made at the heap's current address. Each thunk's creation
//! records that address in its region's or table's `Owner`: the last one
//! recorded is right for every live thunk there. (A region or table whose
//! thunks all died may keep an old address until its next thunk is made;
//! nothing reads it meanwhile.)

use std::sync::atomic::{AtomicUsize, Ordering};

/// A heap's exposed address, as its thunks last recorded it.
#[derive(Debug, Default)]
pub(crate) struct Owner(AtomicUsize);

impl Owner {
    /// Records `heap` (an exposed address), by the thread making a thunk
    /// there before the thunk exists. Read first, written only when it
    /// changed, so that threads making thunks in one region do not write
    /// its line in the steady state. Relaxed: a thunk reaches another
    /// thread only through something that synchronises (it is sent, or
    /// shared behind a lock), which carries this store with it.
    #[inline]
    pub(crate) fn set(&self, heap: usize) {
        if self.0.load(Ordering::Relaxed) != heap {
            self.0.store(heap, Ordering::Relaxed);
        }
    }

    /// The heap's exposed address, as a live thunk here may read it.
    #[inline]
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}
