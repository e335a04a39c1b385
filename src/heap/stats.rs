//! [`HeapStats`]: what a heap holds and what it costs, from
//! [`Heap::stats`].

use lock_api::RawMutex;

use super::Heap;
use super::region::Region;
use crate::strategy::Strategy;
use crate::sys;

/// Counters describing a heap, from [`Heap::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapStats {
    /// The heap's strategy.
    pub strategy: Strategy,
    /// Regions currently reserved.
    pub regions: usize,
    /// Address space reserved, in bytes: regions with their data slots,
    /// and trampoline tables (code, records, data slots).
    pub bytes_reserved: usize,
    /// Pages using memory: code pages holding bytes (code or traps), data
    /// pages a closure's slot was handed out on, and the record (and, once
    /// used, data) pages of trampoline tables, with their sealed pages of
    /// code on a protect heap.
    pub pages_committed: usize,
    /// `pages_committed` in bytes.
    pub bytes_committed: usize,
    /// Live allocations (unsealed spans, sealed spans, pages).
    pub live_allocations: usize,
    /// Bytes of the live allocations, rounded up to the allocation unit.
    pub bytes_in_use: usize,
    /// Bytes of bookkeeping kept outside the code (region records and bit
    /// vectors).
    pub metadata_bytes: usize,
    /// Trampoline tables mapped (each a page of code per kind of context
    /// placement in use, mapped from the binary's file or, on a protect
    /// heap, a sealed copy; a page of records; a page of data slots).
    pub trampoline_tables: usize,
}

impl<L: RawMutex> Heap<L> {
    /// Counters describing the heap now.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let span = heap.alloc(100)?;
    /// let stats = heap.stats();
    /// assert_eq!(stats.live_allocations, 1);
    /// assert!(stats.bytes_in_use >= 100);
    /// drop(span);
    /// assert_eq!(heap.stats().live_allocations, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> HeapStats {
        let page = sys::page_size();
        let mut stats = HeapStats {
            strategy: self.strategy(),
            regions: 0,
            bytes_reserved: 0,
            pages_committed: 0,
            bytes_committed: 0,
            live_allocations: 0,
            bytes_in_use: 0,
            metadata_bytes: 0,
            trampoline_tables: 0,
        };
        // One shard at a time (never two locks at once).
        for shard in self.shards.iter() {
            // A shard this thread is inside of (re-entered: `reentry.rs`)
            // is not counted.
            let Some(state) = shard.enter() else {
                continue;
            };
            let regions = state.regions.iter().flatten();
            // A table's mapped code page is the binary's own (page cache,
            // shared), a sealed one private; its record page uses memory,
            // and its data page once a slot was used.
            stats.pages_committed += regions.clone().map(Region::committed_pages).sum::<usize>()
                + state.tables.committed_pages();
            stats.regions += regions.clone().count();
            // Ready granules are in use in their regions, not live.
            let held = state.ready.held();
            stats.live_allocations += state.live - held.allocations();
            stats.bytes_in_use += state.bytes_in_use - held.bytes();
            stats.metadata_bytes += regions.map(Region::metadata_bytes).sum::<usize>()
                + state.regions.capacity() * std::mem::size_of::<Option<Region>>()
                + state.tables.metadata_bytes();
            stats.trampoline_tables += state.tables.tables();
        }
        // Ready granules in thread caches are in use in their shards, not
        // live. (Read apart from the shards: while other threads move
        // granules between their caches and shards the sum is a snapshot of
        // moments close together, never below zero.)
        if let Some(caches) = self.caches {
            let held = caches.held();
            stats.live_allocations = stats.live_allocations.saturating_sub(held.allocations());
            stats.bytes_in_use = stats.bytes_in_use.saturating_sub(held.bytes());
        }
        stats.bytes_committed = stats.pages_committed * page;
        stats.bytes_reserved = self.space.reserved();
        stats
    }
}
