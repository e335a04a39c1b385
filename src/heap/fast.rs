//! The paths of one-granule thunks on dual-mapped heaps, made and freed
//! as [`GranuleThunk`]s (the address the code runs at and its region's
//! lock-free side, `region/info.rs`).
//!
//! - On the global heap: a ready granule from this thread's cache
//!   (`thread_cache.rs`), no lock taken; freed back into it.
//! - Otherwise, under the shard's lock: a granule from the first size
//!   class whose page holds bytes, written in one 32-byte copy (code, then
//!   traps) through its region's view; freed, it gets a granule of traps
//!   and goes back to the first size class (or its region's bit vector).
//! - What allows neither (strict heaps, a region shared with a fork child,
//!   a page holding no bytes yet) takes the general region write in
//!   `region/` and the general free in `allocator.rs`.

use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Heap;
use super::allocator::{Allocation, State, THUNK_CACHE_DEPTH, Want};
use super::fork::Stamp;
use super::ready::{MAGAZINE_DEPTH, Magazine, Magazines, Ready};
use super::region::{GRANULE, RegionInfo};
use super::thread_cache::{GRANULES, REFILL};
use crate::arch::{TRAP_GRANULE, ThunkCode};
use crate::error::Result;
use crate::strategy::CodeStrategy;
use crate::sys;

/// A one-granule thunk's allocation: what its handle keeps. Two words, so
/// that it comes back from a call in registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GranuleThunk<'h> {
    /// The address the code runs at.
    pub(crate) addr: usize,
    /// Its region's lock-free side, valid while the granule is held.
    pub(crate) info: &'h RegionInfo,
}

impl GranuleThunk<'_> {
    /// The granule's private data slot.
    #[inline]
    pub(crate) fn data(&self) -> NonNull<u8> {
        self.info.granule(self.addr).data
    }
}

impl<L: RawMutex> Heap<L> {
    /// A one-granule thunk: `make` gets the address the code runs at and
    /// the granule's data slot and returns the code (at most `GRANULE`
    /// bytes, traps after it), which is written and made executable. From
    /// this thread's cache when the heap has one, else under the shard's
    /// lock. `Ok(None)` where the heap's granules have no data slots (not
    /// dual-mapped): the caller makes another kind of thunk.
    ///
    /// # Errors
    ///
    /// As [`Heap::alloc`](crate::Heap::alloc); the heap is unchanged then.
    #[inline(always)]
    pub(crate) fn thunk_granule(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode + Copy,
    ) -> Result<Option<GranuleThunk<'_>>> {
        match self.thunk_granule_fast(make) {
            Some(granule) => Ok(Some(granule)),
            None => self.thunk_granule_locked(make),
        }
    }

    /// [`thunk_granule`](Self::thunk_granule) from a ready granule only:
    /// this thread's cache on the global heap, else the shard's magazine
    /// (one lock round trip). `None` when none can be had (nothing is
    /// written then): the caller takes [`thunk_granule`](Self::thunk_granule).
    ///
    /// The code is written while the magazine is held (inside the cache's
    /// busy section, or under the shard's lock): no `fork()` can happen
    /// before the write is done, so no region is moved to a new file (its
    /// pages copied) while a write through its old view is under way.
    #[inline(always)]
    pub(crate) fn thunk_granule_fast(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Option<GranuleThunk<'_>> {
        match self.caches {
            Some(caches) => caches
                .with::<GRANULES, _>(|magazines| {
                    let magazine = &mut magazines.granules;
                    // Stable while the magazine is held: a fork waits
                    // (fork.rs).
                    let now = Stamp::now();
                    let ready = match magazine.pop(now) {
                        Some(ready) => ready,
                        None => {
                            self.refill(magazine, now);
                            magazine.pop(now)?
                        }
                    };
                    // SAFETY: popped from this thread's magazine, held.
                    Some(unsafe { self.write_ready(ready, make) })
                })
                .flatten(),
            None => self.thunk_granule_shard(make),
        }
    }

    /// Writes the thunk `make` returns into `ready`.
    ///
    /// # Safety
    /// `ready` is the caller's (popped from a magazine it holds, which it
    /// still holds: no fork can happen before this returns).
    #[inline(always)]
    unsafe fn write_ready(
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
        // SAFETY: `view` is the ready granule's writable view (its stamp is
        // current); the granule is ours and unpublished.
        unsafe { write_granule(ready.view.as_ptr(), ready.addr, code) };
        GranuleThunk {
            addr: ready.addr,
            info,
        }
    }

    /// A thunk in a ready granule from this thread's shard's magazine
    /// (filled when empty), written under the shard's lock; `None` where
    /// the heap's granules cannot be made ready (not dual-mapped, strict,
    /// or none left).
    #[inline(never)]
    fn thunk_granule_shard(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Option<GranuleThunk<'_>> {
        if self.config.mode.spans() != Some(CodeStrategy::DualMap) || self.config.strict {
            return None;
        }
        let (shard, locked) = self.my_shard();
        let mut state = locked.lock();
        let state = &mut *state;
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        let ready = match state.ready.granules.pop(stamp) {
            Some(ready) => ready,
            None => {
                if !state.ready.granules.is_current(stamp) {
                    let stale: Vec<Ready> = state.ready.granules.take(MAGAZINE_DEPTH).collect();
                    for r in stale {
                        self.free_locked(state, &Allocation::of_ready(&r), stamp);
                    }
                }
                self.fill(state, shard, stamp, |state, r| {
                    state.ready.granules.push(r, stamp)
                });
                state.ready.granules.pop(stamp)?
            }
        };
        // SAFETY: popped under the shard's lock, still held.
        Some(unsafe { self.write_ready(ready, make) })
    }

    /// [`thunk_granule`](Self::thunk_granule) where no granule can be made
    /// ready (a strict heap, a region shared with a fork child): under the
    /// shard's lock, a granule from the first size class or the regions'
    /// bit vectors, written by the general region write.
    #[inline(never)]
    fn thunk_granule_locked(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Result<Option<GranuleThunk<'_>>> {
        let (shard, locked) = self.my_shard();
        let mut state = locked.lock();
        let state = &mut *state;
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        let want = Want {
            granules: 1,
            granules32: 1,
            align: 1,
            stamp,
            shard,
        };
        let alloc = self.take_locked(state, want)?;
        let region = state.regions[alloc.region as usize]
            .as_mut()
            .expect("allocation's region is live");
        let start = alloc.start as usize;
        let data = region.data_slot(start);
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
        if let Err(e) = region.write(start, 1, code.as_slice()) {
            self.free_locked(state, &alloc, stamp);
            return Err(e);
        }
        Ok(Some(GranuleThunk {
            addr: alloc.addr,
            info,
        }))
    }

    /// Frees a one-granule thunk's allocation: traps through its view and
    /// back into this thread's cache when the region's view is this
    /// process's own now (no fork since it was last moved), else under the
    /// shard's lock.
    ///
    /// # Safety
    /// `addr` and `info` are those of a [`GranuleThunk`] from
    /// [`thunk_granule`](Self::thunk_granule) of this heap, freed once;
    /// nothing runs its code any more.
    #[inline]
    pub(crate) unsafe fn free_thunk_granule(&self, addr: usize, info: &RegionInfo) {
        let cached = self.caches.and_then(|caches| {
            caches.with::<GRANULES, _>(|magazines| {
                let magazine = &mut magazines.granules;
                // Stable while the magazine is held: a fork waits, so no
                // child can be made between this check and the traps.
                let now = Stamp::now();
                // SAFETY: the caller's contract: freed, nothing runs it.
                let ready = unsafe { trapped(addr, info, now) }?;
                if let Err(ready) = magazine.push(ready, now) {
                    self.spill(magazine, ready, now);
                }
                Some(())
            })
        });
        if cached != Some(Some(())) {
            self.free_granule_locked(addr, info);
        }
    }

    /// [`free_thunk_granule`](Self::free_thunk_granule) under the shard's
    /// lock: traps through the view and into the shard's magazine when the
    /// view is current, else by the general free.
    #[inline(never)]
    fn free_granule_locked(&self, addr: usize, info: &RegionInfo) {
        let at = info.granule(addr);
        let mut state = self.shard(at.shard).lock();
        let state = &mut *state;
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        // SAFETY: as in `free_thunk_granule`.
        if let Some(ready) = unsafe { trapped(addr, info, stamp) } {
            if state.ready.granules.push(ready, stamp).is_ok() {
                return;
            }
        }
        self.free_locked(state, &Allocation::granule(at, addr), stamp);
    }

    /// A free found `magazine` full: [`REFILL`] granules go back to their
    /// shards, and `ready` in.
    #[cold]
    #[inline(never)]
    fn spill(&self, magazine: &mut Magazine, ready: Ready, stamp: Stamp) {
        self.give_back_ready(&mut magazine.take(REFILL));
        if let Err(ready) = magazine.push(ready, stamp) {
            self.give_back_ready(&mut std::iter::once(ready));
        }
    }

    /// Fills `magazine` with up to [`REFILL`] ready granules from this
    /// thread's shard, after giving back any it holds of an older stamp.
    #[cold]
    #[inline(never)]
    fn refill(&self, magazine: &mut Magazine, now: Stamp) {
        if !magazine.is_current(now) {
            self.give_back_ready(&mut magazine.take(MAGAZINE_DEPTH));
        }
        let (shard, locked) = self.my_shard();
        let mut state = locked.lock();
        self.fill(&mut state, shard, now, |_, ready| magazine.push(ready, now));
    }

    /// Takes up to [`REFILL`] granules of shard `shard` (whose state is
    /// `state`), makes them ready and hands each to `push`. Stops early
    /// (nothing lost) where a granule cannot be made ready or `push`
    /// refuses it.
    ///
    /// Granules come from the first size class one at a time, then from
    /// the bit vectors a run at a time: one search, one commit check and
    /// one data-page mark for the free granules that follow the one found
    /// on its page (a burst of thousands of thunks is mostly this).
    fn fill(
        &self,
        state: &mut State,
        shard: usize,
        now: Stamp,
        mut push: impl FnMut(&mut State, Ready) -> std::result::Result<(), Ready>,
    ) {
        let want = Want {
            granules: 1,
            granules32: 1,
            align: 1,
            stamp: now,
            shard,
        };
        let mut left = REFILL;
        while left > 0 {
            let from_bits = state.cache[0].is_empty();
            let Ok(alloc) = self.take_locked(state, want) else {
                break;
            };
            left -= 1;
            let region = state.regions[alloc.region as usize]
                .as_mut()
                .expect("allocation's region is live");
            let start = alloc.start as usize;
            let more = if from_bits {
                region.take_following(start, left)
            } else {
                0
            };
            left -= more;
            state.live += more;
            state.bytes_in_use += more * GRANULE;
            let view = match region.granule_view(start, now) {
                Some(view) => Some(view),
                // The page holds no bytes yet: traps commit it (and so the
                // run's other granules, on the same page).
                None => match region.write(start, 1, &TRAP_GRANULE) {
                    Ok(()) => region.granule_view(start, now),
                    Err(_) => None,
                },
            };
            // The data slots' page (one for the whole run) is marked as
            // holding bytes now, before the slots are handed out.
            let data = region
                .data_slot(start)
                .and_then(|_| region.data_slot(start + more));
            let (Some(view), Some(info), Some(_)) =
                (view.and_then(NonNull::new), region.info(), data)
            else {
                self.free_run(state, alloc, more, now);
                break;
            };
            let info = NonNull::from(info);
            for i in 0..=more {
                let ready = Ready {
                    addr: alloc.addr + i * GRANULE,
                    info,
                    // SAFETY: granule `start + i` is in the region, so in
                    // its view.
                    view: unsafe { view.add(i * GRANULE) },
                };
                if push(state, ready).is_err() {
                    self.free_run(state, alloc.granule_after(i), more - i, now);
                    return;
                }
            }
        }
    }

    /// Frees the one-granule allocation `first` and the `more` that follow
    /// it (taken together by [`fill`](Self::fill)), each on its own.
    #[cold]
    fn free_run(&self, state: &mut State, first: Allocation, more: usize, now: Stamp) {
        for i in 0..=more {
            self.free_locked(state, &first.granule_after(i), now);
        }
    }

    /// Empties `magazines` into the heap's general free paths.
    #[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
    pub(super) fn give_back_magazines(&self, magazines: &mut Magazines) {
        self.give_back_ready(&mut magazines.granules.take(MAGAZINE_DEPTH));
        self.give_back_slots(&mut magazines.slots.take(MAGAZINE_DEPTH));
    }

    /// Frees ready granules (their bytes are traps already). Granules next
    /// to each other in one region go back to its bit vector together, a
    /// run at a time; a region shared with a fork child takes the general
    /// free (which moves it first). Consecutive runs of one shard are freed
    /// under one lock round trip (never two locks at once).
    pub(super) fn give_back_ready(&self, granules: &mut dyn Iterator<Item = Ready>) {
        let mut held = None;
        let mut run: Option<Run> = None;
        for ready in granules {
            if run.as_mut().is_some_and(|r| r.extend(&ready)) {
                continue;
            }
            if let Some(r) = run.replace(Run::of(&ready)) {
                self.give_back_run(&mut held, r);
            }
        }
        if let Some(r) = run {
            self.give_back_run(&mut held, r);
        }
    }

    /// Frees the ready granules of `run` under their shard's lock, `held`
    /// (taken, or swapped for it, here).
    fn give_back_run<'a>(
        &'a self,
        held: &mut Option<(u8, lock_api::MutexGuard<'a, L, State>, Stamp)>,
        run: Run,
    ) {
        // SAFETY: a ready granule's region outlives it (`ready.rs`).
        let info = unsafe { run.info.as_ref() };
        let first = Allocation::granule(info.granule(run.low), run.low);
        let (state, stamp) = match held {
            Some((shard, guard, stamp)) if *shard == first.shard => (&mut **guard, *stamp),
            _ => {
                // Release the other shard's lock before taking this one.
                *held = None;
                let guard = self.shard(first.shard).lock();
                // Taken under the lock: a fork cannot slip in between.
                let (_, guard, stamp) = held.insert((first.shard, guard, Stamp::now()));
                (&mut **guard, *stamp)
            }
        };
        let region = state.regions[first.region as usize]
            .as_mut()
            .expect("a ready granule's region is live");
        // The stamp is the region's: current for the first granule, current
        // for all (their pages hold bytes: they were made ready).
        if region.granule_view(first.start as usize, stamp).is_some() {
            region.release_run(first.start as usize, run.n);
            state.live -= run.n;
            state.bytes_in_use -= run.n * GRANULE;
            state.hint = first.region as usize;
        } else {
            for i in 0..run.n {
                self.free_locked(state, &first.granule_after(i), stamp);
            }
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
        self.free_granule_fast_as(state, alloc, stamp, true)
    }

    /// [`free_granule_fast`](Self::free_granule_fast), writing the traps
    /// only when `traps` is set (a ready granule holds traps already).
    #[inline]
    fn free_granule_fast_as(
        &self,
        state: &mut State,
        alloc: &Allocation,
        stamp: Stamp,
        traps: bool,
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
        if traps {
            // SAFETY: the granule was just freed by its owner, so nothing
            // may run it; `view` is its `GRANULE` writable bytes.
            unsafe { std::ptr::copy_nonoverlapping(TRAP_GRANULE.as_ptr(), view, GRANULE) };
        }
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

/// Ready granules next to each other in one region: `n` granules from
/// the one that runs at `low`.
struct Run {
    info: NonNull<RegionInfo>,
    low: usize,
    n: usize,
}

impl Run {
    fn of(ready: &Ready) -> Run {
        Run {
            info: ready.info,
            low: ready.addr,
            n: 1,
        }
    }

    /// Takes `ready` in when it is the granule just above or below the run
    /// (magazines give granules back in either order).
    fn extend(&mut self, ready: &Ready) -> bool {
        if ready.info != self.info {
            return false;
        }
        if ready.addr == self.low + self.n * GRANULE {
            self.n += 1;
        } else if ready.addr + GRANULE == self.low {
            self.low = ready.addr;
            self.n += 1;
        } else {
            return false;
        }
        true
    }
}

/// The freed thunk granule at `addr` made ready again: its bytes turned
/// into traps through its view, when that view is this process's own now
/// (`None`, nothing written, otherwise: the general free moves the region
/// first).
///
/// # Safety
/// The granule was just freed by its owner, so nothing may run it; the
/// caller holds what keeps a fork from starting meanwhile (the thread
/// cache's busy section, or the shard's lock), so the view stays current.
#[inline(always)]
unsafe fn trapped(addr: usize, info: &RegionInfo, now: Stamp) -> Option<Ready> {
    let view = info.view_if_current(addr, now)?;
    // SAFETY: `view` is the granule's `GRANULE` writable bytes, of a
    // region no other process maps (its view is current); nothing runs it.
    unsafe { std::ptr::copy_nonoverlapping(TRAP_GRANULE.as_ptr(), view.as_ptr(), GRANULE) };
    Some(Ready {
        addr,
        info: NonNull::from(info),
        view,
    })
}

/// Writes `code` as a whole granule (the code, then traps) through `view`,
/// the writable view of the granule that runs at `addr`.
///
/// # Safety
/// `view` is the `GRANULE` writable bytes of a granule the caller holds
/// (taken under its shard's lock, or from its thread's cache) and whose
/// pointer is not yet published, so nothing runs it.
#[inline]
unsafe fn write_granule(view: *mut u8, addr: usize, code: ThunkCode) {
    let granule = code.into_granule();
    // SAFETY: the caller's contract: `view` is `GRANULE` bytes, ours.
    unsafe { std::ptr::copy_nonoverlapping(granule.as_ptr(), view, GRANULE) };
    sys::flush_icache(addr as *const u8, GRANULE);
}
