//! The path of one-granule thunks on dual-mapped heaps: a granule whose
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
use super::region::GRANULE;
use super::span::ExecSpan;
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
