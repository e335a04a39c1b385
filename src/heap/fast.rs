//! The paths of one-granule thunks on dual-mapped heaps. On the global
//! heap, a ready granule from this thread's cache (`thread_cache.rs`), no
//! lock taken. Otherwise a granule whose
//! page holds bytes, in a region of this process with a writable view, is
//! written in one 32-byte copy (code, then traps), and a freed one gets a
//! granule of traps and goes back to the first size class (or its region's
//! bit vector). What does not allow that takes the general region write in
//! `region/` and the general free in `allocator.rs`.

use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Heap;
use super::allocator::{Allocation, State, THUNK_CACHE_DEPTH, Want};
use super::fork::Stamp;
use super::ready::{MAGAZINE_DEPTH, Magazine, Ready, ThunkGranule};
use super::region::GRANULE;
use super::span::ExecSpan;
use super::thread_cache::REFILL;
use crate::arch::{TRAP_GRANULE, ThunkCode};
use crate::error::Result;
use crate::sys;

impl<L: RawMutex> Heap<L> {
    /// The fast path of a one-granule thunk: a granule from the first size
    /// class whose page holds bytes already, in a region of this process
    /// with a writable view, and its data slot; the granule (`GRANULE`
    /// bytes, traps where `make` leaves them) written through that view.
    /// `None`, with nothing changed, when any of that does not hold: the
    /// caller takes the general path.
    #[inline]
    pub(crate) fn exec_granule_fast(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Option<(ExecSpan<'_, L>, NonNull<u8>)> {
        let mut state = self.my_shard().1.lock();
        let state = &mut *state;
        let alloc = *state.cache[0].last()?;
        let stamp = Stamp::now();
        let region = state.regions[alloc.region as usize].as_mut()?;
        let view = region.granule_view(alloc.start as usize, stamp)?;
        let data = region.data_slot(alloc.start as usize)?;
        state.cache[0].pop();
        let code = make(alloc.addr, data);
        let len = code.len();
        // SAFETY: `view` is this granule's writable view; the granule is
        // ours (taken under the lock) and unpublished.
        unsafe { write_granule(view, alloc.addr, code) };
        state.live += 1;
        state.bytes_in_use += GRANULE;
        Some((ExecSpan::from_parts(self, alloc, len), data))
    }

    /// The rest of the one-granule path, when
    /// [`exec_granule_fast`](Self::exec_granule_fast) declines: a granule
    /// from the first size class or the regions' bit vectors, its code
    /// (`make` gets the address it runs at and the data slot) written in
    /// one 32-byte copy through the writable view when the region allows it
    /// (this process's, not strict, the page holding bytes), else by the
    /// general region write. All under the shard's lock, once.
    ///
    /// # Errors
    ///
    /// As [`Heap::alloc`](crate::Heap::alloc); the heap is unchanged then.
    #[inline]
    pub(crate) fn exec_thunk_granule(
        &self,
        make: impl FnOnce(usize, Option<NonNull<u8>>) -> ThunkCode,
    ) -> Result<(ExecSpan<'_, L>, Option<NonNull<u8>>)> {
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
        let data = region.data_slot(alloc.start as usize);
        let code = make(alloc.addr, data);
        let len = code.len();
        match region.granule_view(alloc.start as usize, stamp) {
            // SAFETY: as in `exec_granule_fast`.
            Some(view) => unsafe { write_granule(view, alloc.addr, code) },
            None => {
                if let Err(e) = region.write(alloc.start as usize, 1, code.as_slice()) {
                    self.free_locked(state, &alloc, stamp);
                    return Err(e);
                }
            }
        }
        Ok((ExecSpan::from_parts(self, alloc, len), data))
    }

    /// The fast path of freeing a one-granule allocation: traps written
    /// through the view, and the granule kept in the first size class (or,
    /// when that is full, given back to its region's bit vector). Returns
    /// false, with nothing changed, when the general path is needed.
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

/// Writes `code` as a whole granule (the code, then traps) through `view`,
/// the writable view of the granule that runs at `addr`.
///
/// # Safety
/// `view` is the `GRANULE` writable bytes of a granule the caller holds
/// (taken under its shard's lock) and whose pointer is not yet published,
/// so nothing runs it.
#[inline]
unsafe fn write_granule(view: *mut u8, addr: usize, code: ThunkCode) {
    let granule = code.into_granule();
    // SAFETY: the caller's contract: `view` is `GRANULE` bytes, ours.
    unsafe { std::ptr::copy_nonoverlapping(granule.as_ptr(), view, GRANULE) };
    sys::flush_icache(addr as *const u8, GRANULE);
}

/// The path of one-granule thunks on the global heap, through this
/// thread's cache of ready granules (`thread_cache.rs`): no lock in the
/// steady state.
impl<L: RawMutex> Heap<L> {
    /// A thunk in a ready granule of this thread's cache (refilled from its
    /// shard when empty): the granule (`GRANULE` bytes, traps where `make`
    /// leaves them; `make` gets the address it runs at and the data slot)
    /// written through its view. `None`, with nothing changed, on a heap
    /// without thread caches or when the cache is unavailable or cannot be
    /// refilled: the caller takes the shard path.
    #[inline(always)]
    pub(crate) fn thunk_granule_cached(
        &self,
        make: impl FnOnce(usize, NonNull<u8>) -> ThunkCode,
    ) -> Option<(ThunkGranule<'_, L>, NonNull<u8>)> {
        let caches = self.caches?;
        let (ready, stamp) = caches.with(|magazine| {
            // Stable while the magazine is held: a fork waits (fork.rs).
            let now = Stamp::now();
            match magazine.pop(now) {
                Some(ready) => Some((ready, now)),
                None => {
                    self.refill(magazine, now);
                    magazine.pop(now).map(|ready| (ready, now))
                }
            }
        })??;
        let code = make(ready.addr(), ready.data());
        let len = code.len();
        // SAFETY: `view` is the ready granule's writable view; the granule
        // is ours (popped from this thread's magazine) and unpublished.
        unsafe { write_granule(ready.view.as_ptr(), ready.addr(), code) };
        Some((ThunkGranule::new(self, ready, stamp, len), ready.data()))
    }

    /// Frees a thunk's ready granule, made under `stamp`: traps through its
    /// view and back into this thread's cache when the stamp is still
    /// current, else by the general free (which moves a region shared with
    /// a fork child first).
    #[inline]
    pub(super) fn free_ready(&self, ready: &Ready, stamp: &Stamp) {
        let cached = self.caches.and_then(|caches| {
            caches.with(|magazine| {
                // Stable while the magazine is held: a fork waits, so no
                // child can be made between this check and the traps.
                if Stamp::now() != *stamp {
                    return false;
                }
                // SAFETY: the granule was just freed by its owner, so
                // nothing may run it; `view` is its `GRANULE` writable
                // bytes, of a region not shared with any other process
                // (the stamp is current).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        TRAP_GRANULE.as_ptr(),
                        ready.view.as_ptr(),
                        GRANULE,
                    );
                }
                if let Err(ready) = magazine.push(*ready, *stamp) {
                    self.spill(magazine, ready, *stamp);
                }
                true
            })
        });
        if cached != Some(true) {
            self.free_ready_locked(ready);
        }
    }

    /// [`free_ready`](Self::free_ready) by the general free, under the
    /// shard's lock.
    #[cold]
    #[inline(never)]
    fn free_ready_locked(&self, ready: &Ready) {
        self.free(&ready.alloc);
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
    /// Stops early (nothing lost) where a granule cannot be made ready.
    #[cold]
    #[inline(never)]
    fn refill(&self, magazine: &mut Magazine, now: Stamp) {
        if !magazine.is_current(now) {
            self.give_back_ready(&mut magazine.take(MAGAZINE_DEPTH));
        }
        let (shard, locked) = self.my_shard();
        let mut state = locked.lock();
        let state = &mut *state;
        let want = Want {
            granules: 1,
            granules32: 1,
            align: 1,
            stamp: now,
            shard,
        };
        for _ in 0..REFILL {
            let Ok(alloc) = self.take_locked(state, want) else {
                break;
            };
            let region = state.regions[alloc.region as usize]
                .as_mut()
                .expect("allocation's region is live");
            let start = alloc.start as usize;
            let view = match region.granule_view(start, now) {
                Some(view) => Some(view),
                // The page holds no bytes yet: traps commit it.
                None => match region.write(start, 1, &TRAP_GRANULE) {
                    Ok(()) => region.granule_view(start, now),
                    Err(_) => None,
                },
            };
            let ready = view
                .and_then(NonNull::new)
                .zip(region.data_slot(start))
                .map(|(view, data)| Ready { alloc, view, data });
            let Some(ready) = ready else {
                self.free_locked(state, &alloc, now);
                break;
            };
            if magazine.push(ready, now).is_err() {
                self.free_locked(state, &alloc, now);
                break;
            }
        }
    }

    /// Frees ready granules through the general path (their bytes are
    /// traps already; a region shared with a fork child is moved first).
    pub(super) fn give_back_ready(&self, granules: &mut dyn Iterator<Item = Ready>) {
        for ready in granules {
            self.free(&ready.alloc);
        }
    }
}
