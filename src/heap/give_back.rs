//! How ready granule allocations (their bytes traps already) go back from
//! magazines to their regions' bit vectors: neighbours in one region a run
//! at a time, consecutive runs of one shard under one lock round trip, and
//! a run met while this thread is inside that shard's lock deferred until
//! it leaves (`reentry.rs`).

use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Heap;
use super::allocator::Allocation;
use super::ready::{MAGAZINE_DEPTH, Magazines, Ready};
use super::reentry;
use super::region::{GRANULE, RegionInfo};
use super::shard::OneShardAtATime;

impl<L: RawMutex> Heap<L> {
    /// Empties `magazines` into the heap's general free paths.
    #[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
    pub(super) fn give_back_magazines(&self, magazines: &mut Magazines) {
        let [one, two] = &mut magazines.thunks;
        self.give_back_ready::<1>(&mut one.take(MAGAZINE_DEPTH));
        self.give_back_ready::<2>(&mut two.take(MAGAZINE_DEPTH));
        self.give_back_slots(&mut magazines.slots.take(MAGAZINE_DEPTH));
    }

    /// Frees ready `N`-granule allocations (their bytes are traps
    /// already). Allocations next to each other in one region go back to
    /// its bit vector together, a run at a time; a region shared with a
    /// fork child takes the general free (which moves it first).
    /// Consecutive runs of one shard are freed under one lock round trip
    /// (never two locks at once).
    pub(super) fn give_back_ready<const N: usize>(
        &self,
        allocations: &mut dyn Iterator<Item = Ready>,
    ) {
        let mut locks = OneShardAtATime::new();
        let mut run: Option<Run<N>> = None;
        for ready in allocations {
            if run.as_mut().is_some_and(|r| r.extend(&ready)) {
                continue;
            }
            if let Some(r) = run.replace(Run::of(&ready)) {
                self.give_back_run(&mut locks, r);
            }
        }
        if let Some(r) = run {
            self.give_back_run(&mut locks, r);
        }
    }

    /// Frees the ready allocations of `run` under their shard's lock (taken
    /// in `locks`).
    fn give_back_run<'a, const N: usize>(
        &'a self,
        locks: &mut OneShardAtATime<'a, L>,
        run: Run<N>,
    ) {
        // SAFETY: a ready granule's region outlives it (`ready.rs`).
        let info = unsafe { run.info.as_ref() };
        let first = Allocation::thunk(info.granule(run.low), run.low, N);
        let Some((state, stamp)) = locks.lock(self, first.shard) else {
            // Re-entered (`reentry.rs`): given back when this thread leaves.
            unsafe fn later<L: RawMutex, const N: usize>(
                heap: *const (),
                w: [usize; reentry::ARGS],
            ) {
                let run = Run::<N> {
                    info: NonNull::new(w[0] as *mut RegionInfo).expect("a region's info"),
                    low: w[1],
                    n: w[2],
                };
                // SAFETY: `defer`'s contract: the heap outlives its
                // regions and allocations, and these were not freed yet.
                let heap = unsafe { &*heap.cast::<Heap<L>>() };
                heap.give_back_run(&mut OneShardAtATime::new(), run);
            }
            let _ = reentry::defer(reentry::Deferred {
                run: later::<L, N>,
                heap: std::ptr::from_ref(self).cast(),
                args: [run.info.as_ptr() as usize, run.low, run.n, 0, 0, 0],
            });
            return;
        };
        let region = state.regions[first.region as usize]
            .as_mut()
            .expect("a ready granule's region is live");
        // The stamp is the region's: current for the first granule, current
        // for all (their pages hold bytes: they were made ready).
        if region.granule_view(first.start as usize, stamp).is_some() {
            region.release_run(first.start as usize, run.n * N, run.n);
            state.live -= run.n;
            state.bytes_in_use -= run.n * N * GRANULE;
            state.hint = first.region as usize;
        } else {
            for i in 0..run.n {
                self.free_locked(state, &first.nth_after(i), stamp);
            }
        }
    }
}

/// Ready allocations of `N` granules next to each other in one region:
/// `n` of them from the one that runs at `low`.
struct Run<const N: usize> {
    info: NonNull<RegionInfo>,
    low: usize,
    n: usize,
}

impl<const N: usize> Run<N> {
    fn of(ready: &Ready) -> Self {
        Run {
            info: ready.info,
            low: ready.addr,
            n: 1,
        }
    }

    /// Takes `ready` in when it is the allocation just above or below the
    /// run (magazines give them back in either order).
    fn extend(&mut self, ready: &Ready) -> bool {
        let len = N * GRANULE;
        if ready.info != self.info {
            return false;
        }
        if ready.addr == self.low + self.n * len {
            self.n += 1;
        } else if ready.addr + len == self.low {
            self.low = ready.addr;
            self.n += 1;
        } else {
            return false;
        }
        true
    }
}
