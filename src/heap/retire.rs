//! What a heap gives up for good: allocations freed where their region
//! could not be written (stranded, their pages made inaccessible), and, at
//! a per-thread heap's release, everything but the code debug mode keeps
//! in quarantine.

use std::sync::atomic::Ordering;

use lock_api::RawMutex;

use super::Heap;
use super::allocator::{Allocation, CACHE_CLASSES, State};
use super::fork::Stamp;
use super::ready::{MAGAZINE_DEPTH, Ready};

impl<L: RawMutex> Heap<L> {
    /// A freed allocation whose region could not be written (see
    /// `free_locked`): out of use for good, and its pages made inaccessible
    /// once nothing live is on them. Granules waiting for reuse (the
    /// shard's magazines and caches, all traps) count as nothing live:
    /// the magazines' are freed first (which strands them too where their
    /// region cannot be written either), and this region's cached ones
    /// are let go of.
    #[cold]
    #[inline(never)]
    pub(super) fn strand(&self, state: &mut State, alloc: &Allocation, stamp: Stamp) {
        for n in [1, 2] {
            let ready: Vec<Ready> = state.ready.thunks[n - 1].take(MAGAZINE_DEPTH).collect();
            for r in ready {
                self.free_locked(state, &Allocation::of_ready(&r, n), stamp);
            }
        }
        let index = alloc.region as usize;
        for class in 0..CACHE_CLASSES {
            let cached = std::mem::take(&mut state.cache[class]);
            for c in cached {
                if c.region as usize == index {
                    if let Some(region) = state.regions[index].as_mut() {
                        region.release_bits(c.start as usize, c.granules as usize);
                    }
                } else {
                    state.cache[class].push(c);
                }
            }
        }
        if let Some(region) = state.regions[index].as_mut() {
            region.strand(alloc.start as usize, alloc.granules as usize);
        }
    }

    /// Counts an allocation that debug mode keeps in quarantine: live for
    /// the rest of the process, never freed, never written again.
    pub(crate) fn note_quarantined(&self) {
        self.quarantined.fetch_add(1, Ordering::Relaxed);
    }

    /// For a heap nothing can reach any more (a per-thread heap at its
    /// thread's exit), just compacted by its caller, whose only live allocations are quarantined debug
    /// code, which is never freed or written again: keeps that code mapped
    /// (read+exec, for the rest of the process: a stale call through it is
    /// still reported) and lets go of everything else of each region,
    /// its file descriptor and writable view included. Returns whether it
    /// did; the heap can then be dropped. Heaps with static-trampoline
    /// tables keep them (no descriptor to close) and are left alone.
    // Per-thread heaps are the default heaps' (the `default-heap` feature).
    #[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
    pub(crate) fn keep_only_quarantined_code(&self) -> bool {
        let quarantined = self.quarantined.load(Ordering::Relaxed);
        let stats = self.stats();
        if quarantined == 0 || stats.live_allocations != quarantined || stats.trampoline_tables != 0
        {
            return false;
        }
        for shard in self.shards.iter() {
            let Some(mut state) = shard.enter() else {
                continue;
            };
            for slot in &mut state.regions {
                if let Some(region) = slot.take() {
                    if region.live() > 0 {
                        region.keep_code_only();
                    }
                }
            }
        }
        true
    }
}
