//! Shards: a `Sync` heap's state is split over a few independently locked
//! shards, and each thread allocates from one (chosen round-robin when the
//! thread first allocates), so threads creating and dropping at once do not
//! contend for one lock or bounce its cache line. An allocation is freed
//! into the shard it came from, whichever thread frees it. A heap without a
//! lock (`NoLock`) has one shard. The shards share one address-space
//! budget, [`AddressSpace`].
//!
//! Shards keep nothing per thread (the global heap's per-thread caches,
//! `thread_cache.rs`, go back to their shards when their threads end), and
//! [`Heap::compact`](super::Heap::compact) reaches every free slot: it
//! compacts each shard in turn.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use lock_api::RawMutex;

use super::Heap;
use super::allocator::State;
use super::fork::Stamp;
use super::locked::{Locked, ShardGuard};
use crate::error::{Error, Result};

/// The most shards a heap has.
const MAX_SHARDS: usize = 8;

/// How many shards a `Sync` heap gets: one per available core, at most
/// [`MAX_SHARDS`], asked of the system once.
pub(super) fn shard_count() -> usize {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    match COUNT.load(Ordering::Relaxed) {
        0 => {
            let n = std::thread::available_parallelism()
                .map_or(1, usize::from)
                .clamp(1, MAX_SHARDS);
            COUNT.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

thread_local! {
    /// This thread's shard number (taken from `NEXT` on first use).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// This thread's shard number, below [`MAX_SHARDS`].
#[inline]
fn this_thread() -> usize {
    SHARD
        .try_with(|s| match s.get() {
            usize::MAX => {
                let n = NEXT.fetch_add(1, Ordering::Relaxed) % MAX_SHARDS;
                s.set(n);
                n
            }
            n => n,
        })
        // A thread whose thread-locals are gone (exiting) uses shard 0.
        .unwrap_or(0)
}

impl<L: RawMutex> Heap<L> {
    /// The shard this thread allocates from, and its number.
    #[inline]
    pub(super) fn my_shard(&self) -> (usize, &Locked<L>) {
        let i = if self.shards.len() == 1 {
            0
        } else {
            this_thread() % self.shards.len()
        };
        (i, &self.shards[i])
    }

    /// Shard `i` (an allocation's).
    #[inline]
    pub(super) fn shard(&self, i: u8) -> &Locked<L> {
        &self.shards[usize::from(i)]
    }
}

/// One shard's lock at a time, for giving back a run of things that may
/// belong to different shards: consecutive ones of one shard share a lock
/// round trip, and the held lock is released before another is taken
/// (never two at once, see the lock order in `fork.rs`).
pub(super) struct OneShardAtATime<'a, L: RawMutex> {
    held: Option<(u8, ShardGuard<'a, L>, Stamp)>,
}

impl<'a, L: RawMutex> OneShardAtATime<'a, L> {
    pub(super) fn new() -> Self {
        OneShardAtATime { held: None }
    }

    /// Shard `shard`'s state, locked (the lock kept for the next call), and
    /// the [`Stamp`] taken under the lock; `None` where this thread is
    /// inside that shard already (`reentry.rs`).
    pub(super) fn lock(&mut self, heap: &'a Heap<L>, shard: u8) -> Option<(&mut State, Stamp)> {
        if !matches!(&self.held, Some((s, _, _)) if *s == shard) {
            // Release the other shard's lock before taking this one.
            self.held = None;
            let guard = heap.shard(shard).enter()?;
            // Taken under the lock: a fork cannot slip in between.
            self.held = Some((shard, guard, Stamp::now()));
        }
        let (_, guard, stamp) = self.held.as_mut().expect("locked just above");
        Some((&mut **guard, *stamp))
    }
}

/// The address space a heap's shards reserve together, against the heap's
/// [`max_reserved`](super::HeapBuilder::max_reserved) limit.
#[derive(Debug)]
pub(super) struct AddressSpace {
    reserved: AtomicUsize,
    limit: usize,
}

impl AddressSpace {
    pub(super) fn new(limit: usize) -> Self {
        AddressSpace {
            reserved: AtomicUsize::new(0),
            limit,
        }
    }

    /// Reserves `bytes` more.
    ///
    /// # Errors
    ///
    /// [`Error::HeapExhausted`] past the limit; nothing is reserved then.
    pub(super) fn reserve(&self, bytes: usize) -> Result<()> {
        let before = self.reserved.fetch_add(bytes, Ordering::Relaxed);
        if before
            .checked_add(bytes)
            .is_none_or(|total| total > self.limit)
        {
            self.reserved.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Error::HeapExhausted {
                requested: bytes,
                reserved: before,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// Gives `bytes` back.
    pub(super) fn release(&self, bytes: usize) {
        self.reserved.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes reserved now.
    pub(super) fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }
}
