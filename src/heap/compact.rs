//! [`Heap::compact`]: what a heap gives back to the system on request:
//! free granules and slots kept ready (in shards and thread caches), whole
//! empty regions, the memory of free pages, empty trampoline tables.

use lock_api::RawMutex;

use super::Heap;
use super::allocator::{Allocation, State};
use super::fork::Stamp;
use super::ready::{MAGAZINE_DEPTH, Ready};

impl<L: RawMutex> Heap<L> {
    /// Releases every empty region back to the system, and the memory of
    /// free pages in the others. Returns the bytes released (address space
    /// unmapped plus memory decommitted).
    ///
    /// Free thunk granules and trampoline slots kept ready for reuse (at
    /// most 64 of each per shard, and on the global heap per thread) go
    /// back first, those of other threads' caches included. (Where a
    /// seccomp filter installed after the global heap was made refuses
    /// `membarrier(2)`, other threads' caches are left alone; they go back
    /// when their threads end.)
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let spans: Vec<_> = (0..1000).map(|_| heap.alloc(64)).collect::<Result<_, _>>()?;
    /// drop(spans);
    /// let released = heap.compact();
    /// println!("{released} bytes given back to the system");
    /// assert_eq!(heap.stats().live_allocations, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact(&self) -> usize {
        // Thread caches first, so their granules are free when the shards
        // are compacted.
        if let Some(drained) = self.caches.and_then(|caches| caches.drain()) {
            let [one, two] = drained.thunks;
            self.give_back_ready::<1>(&mut one.into_iter());
            self.give_back_ready::<2>(&mut two.into_iter());
            self.give_back_slots(&mut drained.slots.into_iter());
        }
        // One shard at a time (never two locks at once).
        self.shards
            .iter()
            // A shard this thread is inside of (re-entered) is skipped.
            .filter_map(|shard| {
                shard
                    .enter()
                    .map(|mut state| self.compact_shard(&mut state))
            })
            .sum()
    }

    /// [`compact`](Heap::compact) for one shard, whose lock the caller
    /// holds.
    fn compact_shard(&self, state: &mut State) -> usize {
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        for n in [1, 2] {
            let ready: Vec<Ready> = state.ready.thunks[n - 1].take(MAGAZINE_DEPTH).collect();
            for r in ready {
                self.free_locked(state, &Allocation::of_ready(&r, n), stamp);
            }
        }
        let slots: Vec<_> = state.ready.slots.take(MAGAZINE_DEPTH).collect();
        for slot in slots {
            self.release_slot_locked(state, slot);
        }
        for class in &mut state.cache {
            for alloc in class.drain(..) {
                let region = state.regions[alloc.region as usize]
                    .as_mut()
                    .expect("cached in a live region");
                region.release_bits(alloc.start as usize, alloc.granules as usize);
            }
        }
        let mut released = 0;
        for slot in &mut state.regions {
            let Some(region) = slot else { continue };
            if region.live() == 0 {
                released += region.reserved_bytes();
                self.space.release(region.reserved_bytes());
                *slot = None;
            } else if region.size() <= self.config.max_region
                && region.unshare_after_fork(stamp).is_ok()
            {
                // (A region of its own holds one live allocation and no
                // free page; it is given back when that is freed.)
                released += region.decommit_free_pages();
            }
        }
        while matches!(state.regions.last(), Some(None)) {
            state.regions.pop();
        }
        state.hint = 0;
        let tables = state.tables.release_empty();
        released += tables;
        self.space.release(tables);
        if state.regions.is_empty() {
            // Start growing from the first size again.
            state.next_region_size = self.config.first_region;
        }
        released
    }
}
