//! The paths of granule thunks on dual-mapped heaps, made and freed as
//! [`GranuleThunk`]s (the address the code runs at and its region's
//! lock-free side, `region/info.rs`). A thunk takes `N` granules: one, or
//! two when its closure needs both data slots (up to 32 bytes); its code
//! is in the first, traps fill the rest. Each `N` has its own magazines.
//!
//! - On the global heap: a ready allocation from this thread's cache
//!   (`thread_cache.rs`), no lock taken; freed back into it.
//! - Otherwise, under the shard's lock: a ready allocation from the
//!   shard's magazine, written in one copy (code, then traps) through its
//!   region's view; freed, it gets traps and goes back there.
//! - Magazines are filled from the size class of `N` granules, then from
//!   the bit vectors a run at a time, and give back runs of neighbours.
//! - What allows none of these (strict heaps, a region shared with a fork
//!   child) takes the general region write in `region/` and the general
//!   free in `allocator.rs`.

use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Heap;
use super::allocator::{Allocation, State, THUNK_CACHE_DEPTH, Want};
use super::fork::Stamp;
use super::ready::{MAGAZINE_DEPTH, Magazine, Ready};
use super::reentry;
use super::region::{GRANULE, RegionInfo};
use super::thread_cache::{REFILL, thunks};
use crate::arch::{TRAP_GRANULE, ThunkCode};
use crate::error::Result;
use crate::strategy::CodeStrategy;
use crate::sys;

/// A granule thunk's allocation: what its handle keeps (its length is the
/// handle's kind). Two words, so that it comes back from a call in
/// registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GranuleThunk<'h> {
    /// The address the code runs at.
    pub(crate) addr: usize,
    /// Its region's lock-free side, valid while the granule is held.
    pub(crate) info: &'h RegionInfo,
}

impl GranuleThunk<'_> {
    /// The private data slot of its first granule (the next granule's
    /// follows it).
    #[inline]
    pub(crate) fn data(&self) -> NonNull<u8> {
        self.info.granule(self.addr).data
    }
}

impl<L: RawMutex> Heap<L> {
    /// A thunk of `N` granules (1 or 2): `make` gets the address the code
    /// runs at and the first granule's data slot and returns the code (at
    /// most `GRANULE` bytes, traps after it), which is written and made
    /// executable. From this thread's cache when the heap has one, else
    /// under the shard's lock. `Ok(None)` where the heap's granules have no
    /// data slots (not dual-mapped): the caller makes another kind of
    /// thunk.
    ///
    /// # Errors
    ///
    /// As [`Heap::alloc`](crate::Heap::alloc); the heap is unchanged then.
    #[inline(always)]
    pub(crate) fn thunk_granule<const N: usize>(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode + Copy,
    ) -> Result<Option<GranuleThunk<'_>>> {
        match self.thunk_granule_fast::<N>(make) {
            Some(granule) => Ok(Some(granule)),
            None => self.thunk_granule_locked::<N>(make),
        }
    }

    /// [`thunk_granule`](Self::thunk_granule) from a ready allocation only:
    /// this thread's cache on the global heap, else the shard's magazine
    /// (one lock round trip). `None` when none can be had (nothing is
    /// written then): the caller takes [`thunk_granule`](Self::thunk_granule).
    ///
    /// The code is written while the magazine is held (inside the cache's
    /// busy section, or under the shard's lock): no `fork()` can happen
    /// before the write is done, so no region is moved to a new file (its
    /// pages copied) while a write through its old view is under way.
    #[inline(always)]
    pub(crate) fn thunk_granule_fast<const N: usize>(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Option<GranuleThunk<'_>> {
        if sys::call_targets_registered() {
            // Each entry is registered with Control Flow Guard by the
            // general write, which can fail: no ready allocations.
            return None;
        }
        match self.caches {
            Some(caches) => caches
                .with(thunks(N), |magazines| {
                    let magazine = &mut magazines.thunks[N - 1];
                    // Stable while the magazine is held: a fork waits
                    // (fork.rs).
                    let now = Stamp::now();
                    let ready = match magazine.pop(now) {
                        Some(ready) => ready,
                        None => {
                            self.refill::<N>(magazine, now);
                            magazine.pop(now)?
                        }
                    };
                    // SAFETY: popped from this thread's magazine, held.
                    Some(unsafe { self.write_ready::<N>(ready, make) })
                })
                .flatten(),
            None => self.thunk_granule_shard::<N>(make),
        }
    }

    /// Writes the thunk `make` returns into `ready`, of `N` granules.
    ///
    /// # Safety
    /// `ready` is the caller's (popped from a magazine of `N`-granule
    /// allocations it holds, which it still holds: no fork can happen
    /// before this returns).
    #[inline(always)]
    unsafe fn write_ready<const N: usize>(
        &self,
        ready: Ready,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> GranuleThunk<'_> {
        // SAFETY: a ready granule's region outlives it (the granule is
        // marked in use), and so the handle that holds it.
        let info = unsafe { ready.info.as_ref() };
        info.owner.set(std::ptr::from_ref(self).expose_provenance());
        let data = info.granule(ready.addr).data;
        let code = make(ready.addr, data);
        // SAFETY: `view` is the ready allocation's writable view (its stamp
        // is current); the allocation is ours and unpublished.
        unsafe { write_granules(ready.view.as_ptr(), ready.addr, code) };
        GranuleThunk {
            addr: ready.addr,
            info,
        }
    }

    /// A thunk in a ready allocation from this thread's shard's magazine
    /// (filled when empty), written under the shard's lock; `None` where
    /// the heap's granules cannot be made ready (not dual-mapped, strict,
    /// or none left). Inline: on a heap without thread caches (a
    /// [`NoLock`](super::NoLock) heap, say) this is the fast path.
    #[inline(always)]
    fn thunk_granule_shard<const N: usize>(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Option<GranuleThunk<'_>> {
        if !self
            .config
            .mode
            .spans()
            .is_some_and(CodeStrategy::dual_maps)
            || self.config.strict
        {
            return None;
        }
        let (shard, locked) = self.my_shard();
        // Re-entered: the locked path says why.
        let mut state = locked.enter()?;
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        let ready = match state.ready.thunks[N - 1].pop(stamp) {
            Some(ready) => ready,
            None => self.refill_shard::<N>(&mut state, shard, stamp)?,
        };
        // SAFETY: popped under the shard's lock, still held.
        Some(unsafe { self.write_ready::<N>(ready, make) })
    }

    /// The shard's magazine of `N`-granule allocations found empty (or of
    /// an older stamp): flushed, filled, and one popped.
    #[cold]
    #[inline(never)]
    fn refill_shard<const N: usize>(
        &self,
        state: &mut State,
        shard: usize,
        stamp: Stamp,
    ) -> Option<Ready> {
        if !state.ready.thunks[N - 1].is_current(stamp) {
            let stale: Vec<Ready> = state.ready.thunks[N - 1].take(MAGAZINE_DEPTH).collect();
            for r in stale {
                self.free_locked(state, &Allocation::of_ready(&r, N), stamp);
            }
        }
        self.fill::<N>(state, shard, stamp, |state, r| {
            state.ready.thunks[N - 1].push(r, stamp)
        });
        state.ready.thunks[N - 1].pop(stamp)
    }

    /// [`thunk_granule`](Self::thunk_granule) where no allocation can be
    /// made ready (a strict heap, a region shared with a fork child): under
    /// the shard's lock, from the size class or the regions' bit vectors,
    /// written by the general region write.
    #[inline(never)]
    fn thunk_granule_locked<const N: usize>(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Result<Option<GranuleThunk<'_>>> {
        let (shard, locked) = self.my_shard();
        let mut state = locked.enter().ok_or_else(reentry::reentered)?;
        let state = &mut *state;
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        let want = Want {
            granules: N,
            granules32: N as u32,
            align: 1,
            stamp,
            shard,
        };
        let alloc = self.take_locked(state, want)?;
        let region = state.regions[alloc.region as usize]
            .as_mut()
            .expect("allocation's region is live");
        let start = alloc.start as usize;
        // Both data slots of a two-granule thunk are marked as holding
        // bytes (one page, or two).
        let data = region
            .data_slot(start)
            .filter(|_| region.data_slot(start + N - 1).is_some());
        let (Some(info), Some(data)) = (region.info().map(NonNull::from), data) else {
            self.free_locked(state, &alloc, stamp);
            return Ok(None);
        };
        // SAFETY: the region's info is boxed and lives as long as the
        // region, which outlives the granule now taken (and so its handle);
        // the heap's lock is released below, but the box never moves.
        let info = unsafe { info.as_ref() };
        info.owner.set(std::ptr::from_ref(self).expose_provenance());
        let code = make(alloc.addr, data);
        if let Err(e) = region.write(start, N, code.as_slice()) {
            self.free_locked(state, &alloc, stamp);
            return Err(e);
        }
        Ok(Some(GranuleThunk {
            addr: alloc.addr,
            info,
        }))
    }

    /// Frees an `N`-granule thunk's allocation: traps through its view and
    /// back into this thread's cache when the region's view is this
    /// process's own now (no fork since it was last moved), else under the
    /// shard's lock.
    ///
    /// # Safety
    /// `addr` and `info` are those of a [`GranuleThunk`] from
    /// [`thunk_granule::<N>`](Self::thunk_granule) of this heap, freed
    /// once; nothing runs its code any more.
    #[inline]
    pub(crate) unsafe fn free_thunk_granule<const N: usize>(&self, addr: usize, info: &RegionInfo) {
        let cached = self.caches.and_then(|caches| {
            caches.with(thunks(N), |magazines| {
                let magazine = &mut magazines.thunks[N - 1];
                // Stable while the magazine is held: a fork waits, so no
                // child can be made between this check and the traps.
                let now = Stamp::now();
                // SAFETY: the caller's contract: freed, nothing runs it.
                let ready = unsafe { trapped(addr, info, now) }?;
                if let Err(ready) = magazine.push(ready, now) {
                    self.spill::<N>(magazine, ready, now);
                }
                Some(())
            })
        });
        if cached != Some(Some(())) {
            self.free_granule_locked::<N>(addr, info);
        }
    }

    /// [`free_thunk_granule`](Self::free_thunk_granule) under the shard's
    /// lock: traps through the view and into the shard's magazine when the
    /// view is current, else by the general free. Inline: on a heap without
    /// thread caches this is the fast path.
    #[inline(always)]
    fn free_granule_locked<const N: usize>(&self, addr: usize, info: &RegionInfo) {
        let Some(mut state) = self.shard(info.shard()).enter() else {
            self.defer_granule_free::<N>(addr, info);
            return;
        };
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        // SAFETY: as in `free_thunk_granule`.
        if let Some(ready) = unsafe { trapped(addr, info, stamp) } {
            if state.ready.thunks[N - 1].push(ready, stamp).is_ok() {
                return;
            }
            // Its traps are written: the general free writes them again.
        }
        self.free_granule_general::<N>(&mut state, addr, info, stamp);
    }

    /// The general free of an `N`-granule thunk's allocation, under its
    /// shard's lock (`state`).
    #[cold]
    #[inline(never)]
    fn free_granule_general<const N: usize>(
        &self,
        state: &mut State,
        addr: usize,
        info: &RegionInfo,
        stamp: Stamp,
    ) {
        self.free_locked(
            state,
            &Allocation::thunk(info.granule(addr), addr, N),
            stamp,
        );
    }

    /// [`free_granule_locked`](Self::free_granule_locked) where this
    /// thread is inside the shard already (`reentry.rs`): done when it
    /// leaves.
    #[cold]
    #[inline(never)]
    fn defer_granule_free<const N: usize>(&self, addr: usize, info: &RegionInfo) {
        unsafe fn later<L: RawMutex, const N: usize>(heap: *const (), w: [usize; reentry::ARGS]) {
            // SAFETY: `defer`'s contract: the heap outlives its regions'
            // infos and allocations, and this one was not freed yet.
            unsafe {
                (*heap.cast::<Heap<L>>())
                    .free_granule_locked::<N>(w[0], &*(w[1] as *const RegionInfo))
            };
        }
        let _ = reentry::defer(reentry::Deferred {
            run: later::<L, N>,
            heap: std::ptr::from_ref(self).cast(),
            args: [addr, std::ptr::from_ref(info) as usize, 0, 0, 0, 0],
        });
    }

    /// A free found `magazine` full: [`REFILL`] allocations go back to
    /// their shards, and `ready` in.
    #[cold]
    #[inline(never)]
    fn spill<const N: usize>(&self, magazine: &mut Magazine, ready: Ready, stamp: Stamp) {
        self.give_back_ready::<N>(&mut magazine.take(REFILL));
        if let Err(ready) = magazine.push(ready, stamp) {
            self.give_back_ready::<N>(&mut std::iter::once(ready));
        }
    }

    /// Fills `magazine` with up to [`REFILL`] ready `N`-granule allocations
    /// from this thread's shard, after giving back any it holds of an older
    /// stamp.
    #[cold]
    #[inline(never)]
    fn refill<const N: usize>(&self, magazine: &mut Magazine, now: Stamp) {
        if !magazine.is_current(now) {
            self.give_back_ready::<N>(&mut magazine.take(MAGAZINE_DEPTH));
        }
        let (shard, locked) = self.my_shard();
        // Re-entered: the magazine stays empty and the caller takes the
        // locked path, which says why.
        let Some(mut state) = locked.enter() else {
            return;
        };
        self.fill::<N>(&mut state, shard, now, |_, ready| magazine.push(ready, now));
    }

    /// Takes up to [`REFILL`] allocations of `N` granules of shard `shard`
    /// (whose state is `state`), makes them ready and hands each to
    /// `push`. Stops early (nothing lost) where one cannot be made ready or
    /// `push` refuses it.
    ///
    /// They come from the size class of `N` granules one at a time, then
    /// from the bit vectors a run at a time: one search, one commit check
    /// and one data-page mark for the free allocations that follow the one
    /// found on its page (a burst of thousands of thunks is mostly this).
    fn fill<const N: usize>(
        &self,
        state: &mut State,
        shard: usize,
        now: Stamp,
        mut push: impl FnMut(&mut State, Ready) -> std::result::Result<(), Ready>,
    ) {
        let want = Want {
            granules: N,
            granules32: N as u32,
            align: 1,
            stamp: now,
            shard,
        };
        let mut left = REFILL;
        while left > 0 {
            let from_bits = state.cache[N - 1].is_empty();
            let Ok(alloc) = self.take_locked(state, want) else {
                break;
            };
            left -= 1;
            let region = state.regions[alloc.region as usize]
                .as_mut()
                .expect("allocation's region is live");
            let start = alloc.start as usize;
            let more = if from_bits {
                region.take_following(start, N, left)
            } else {
                0
            };
            left -= more;
            state.live += more;
            state.bytes_in_use += more * N * GRANULE;
            // The first allocation's last granule may be on the next page
            // (a two-granule one can straddle); the others are on the first
            // granule's page.
            let end = start + N - 1;
            let views = |region: &super::region::Region| {
                region
                    .granule_view(start, now)
                    .filter(|_| region.granule_view(end, now).is_some())
            };
            let view = views(region).or_else(|| {
                // A page holds no bytes yet: traps commit it.
                region.write(start, 1, &TRAP_GRANULE).ok()?;
                region.write(end, 1, &TRAP_GRANULE).ok()?;
                views(region)
            });
            // The data slots' pages are marked as holding bytes now,
            // before the slots are handed out.
            let last = start + (more + 1) * N - 1;
            let data = region
                .data_slot(start)
                .and_then(|_| region.data_slot(end))
                .and_then(|_| region.data_slot(last));
            let (Some(view), Some(info), Some(_)) =
                (view.and_then(NonNull::new), region.info(), data)
            else {
                self.free_run(state, alloc, more, now);
                break;
            };
            let info = NonNull::from(info);
            for i in 0..=more {
                let ready = Ready {
                    addr: alloc.addr + i * N * GRANULE,
                    info,
                    // SAFETY: granule `start + i * N` is in the region, so
                    // in its view.
                    view: unsafe { view.add(i * N * GRANULE) },
                };
                if push(state, ready).is_err() {
                    self.free_run(state, alloc.nth_after(i), more - i, now);
                    return;
                }
            }
        }
    }

    /// Frees the allocation `first` and the `more` of its length that
    /// follow it (taken together by [`fill`](Self::fill)), each on its own.
    #[cold]
    fn free_run(&self, state: &mut State, first: Allocation, more: usize, now: Stamp) {
        for i in 0..=more {
            self.free_locked(state, &first.nth_after(i), now);
        }
    }

    /// The fast path of freeing a one-granule allocation under the shard's
    /// lock: traps written through the view, and the granule kept in the
    /// first size class (or, when that is full, given back to its region's
    /// bit vector). Returns false, with nothing changed, when the general
    /// path is needed.
    #[inline]
    pub(super) fn free_granule_fast(
        &self,
        state: &mut State,
        alloc: &Allocation,
        stamp: Stamp,
    ) -> bool {
        if alloc.granules != 1 {
            return false;
        }
        let Some(region) = state.regions[alloc.region as usize].as_mut() else {
            return false;
        };
        let Some(view) = region.granule_view(alloc.start as usize, stamp) else {
            return false;
        };
        // SAFETY: the granule was just freed by its owner, so nothing may
        // run it; `view` is its `GRANULE` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(TRAP_GRANULE.as_ptr(), view, GRANULE) };
        // SAFETY: the granule's place in its region.
        let executed = unsafe {
            region
                .exec_base()
                .as_ptr()
                .add(alloc.start as usize * GRANULE)
        };
        sys::flush_icache_views(view, executed, GRANULE);
        if state.cache[0].len() < THUNK_CACHE_DEPTH {
            state.cache[0].push(*alloc);
        } else {
            region.release_bits(alloc.start as usize, 1);
        }
        state.live -= 1;
        state.bytes_in_use -= GRANULE;
        state.hint = alloc.region as usize;
        true
    }
}

/// The freed granule thunk at `addr` made ready again: its code turned
/// into traps through its view (a two-granule thunk's second granule only
/// ever holds traps), when that view is this process's
/// own now (`None`, nothing written, otherwise: the general free moves the
/// region first).
///
/// # Safety
/// The thunk was just freed by its owner, so nothing may run it; the
/// caller holds what keeps a fork from starting meanwhile (the thread
/// cache's busy section, or the shard's lock), so the view stays current.
#[inline(always)]
unsafe fn trapped(addr: usize, info: &RegionInfo, now: Stamp) -> Option<Ready> {
    let view = info.view_if_current(addr, now)?;
    // Its code is in the first granule; the others hold traps already.
    // SAFETY: `view` is the first granule's `GRANULE` writable bytes, of a
    // region no other process maps (its view is current); nothing runs it.
    unsafe { std::ptr::copy_nonoverlapping(TRAP_GRANULE.as_ptr(), view.as_ptr(), GRANULE) };
    sys::flush_icache_views(view.as_ptr(), addr as *const u8, GRANULE);
    Some(Ready {
        addr,
        info: NonNull::from(info),
        view,
    })
}

/// Writes `code` into the first granule of a thunk allocation through
/// `view`, its writable view, the allocation running at `addr` (a second
/// granule holds traps already).
///
/// # Safety
/// `view` is the first granule's writable bytes of an allocation the caller
/// holds (taken under its shard's lock, or from its thread's cache) whose
/// bytes are traps and whose pointer is not yet published, so nothing runs
/// it.
#[inline]
unsafe fn write_granules(view: *mut u8, addr: usize, code: ThunkCode) {
    let granule = code.into_granule();
    // SAFETY: the caller's contract: `view` is at least `GRANULE` bytes,
    // ours.
    unsafe { std::ptr::copy_nonoverlapping(granule.as_ptr(), view, GRANULE) };
    sys::flush_icache_views(view, addr as *const u8, GRANULE);
}
