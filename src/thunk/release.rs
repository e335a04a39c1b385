//! How a [`Thunk`] is dropped: its code slot (and data slot) go back to
//! their heap or trampoline table, and its closure is dropped after the
//! code that could reach it is gone.

use lock_api::RawMutex;

use super::Thunk;
use super::handle::{self, MovedOut, Slow};
use crate::abi::{FnPtr, ThunkSig};
use crate::heap::{Heap, RegionInfo};
use crate::trampoline;

impl<F: ThunkSig, L: RawMutex> Drop for Thunk<'_, F, L> {
    #[inline]
    fn drop(&mut self) {
        match self.kind() {
            // A compiled function keeps nothing: its drop is this test.
            handle::COMPILED => {}
            handle::GRANULE => self.release_granule(),
            handle::STATIC => self.release_static(),
            _ => self.release_slow(),
        }
    }
}

impl<'a, F: ThunkSig, L: RawMutex> Thunk<'a, F, L> {
    /// `Drop` of a `GRANULE` thunk.
    #[inline(never)]
    fn release_granule(&mut self) {
        if self.word & handle::PAIR != 0 {
            return self.release_pair();
        }
        self.release_granules::<1>();
    }

    /// `Drop` of a two-granule `GRANULE` thunk.
    #[inline(never)]
    fn release_pair(&mut self) {
        self.release_granules::<2>();
    }

    /// `Drop` of a `GRANULE` thunk of `N` granules (`PAIR` says which).
    #[inline(always)]
    fn release_granules<const N: usize>(&mut self) {
        if self.word & handle::INLINE_DROP != 0 {
            return self.release_granules_dropping::<N>();
        }
        let (heap, addr, info) = self.granule_parts();
        // SAFETY: the thunk's `N` granules, freed once; the thunk is being
        // dropped, so no new call can reach them through it.
        unsafe { heap.free_thunk_granule::<N>(addr, info) };
    }

    /// [`release_granules`](Self::release_granules) of a thunk whose
    /// inline closure needs a drop: the closure leaves its data slot before
    /// the slot goes with the code, and is dropped after the code is freed.
    /// (Apart, so that the common path holds no moved-out closure: copying
    /// one around stalled on store forwarding.)
    #[inline(never)]
    fn release_granules_dropping<const N: usize>(&mut self) {
        let (heap, addr, info) = self.granule_parts();
        let tag = self.word & (handle::INLINE_DROP | handle::PAIR);
        // SAFETY: an `INLINE_DROP` closure is in the slot, written with
        // this tag, moved out once, here.
        let moved = unsafe { MovedOut::take(info.granule(addr).data, tag) };
        // SAFETY: as in `release_granules`.
        unsafe { heap.free_thunk_granule::<N>(addr, info) };
        drop(moved);
    }

    /// A `GRANULE` thunk's heap, code address and region.
    #[inline(always)]
    fn granule_parts(&self) -> (&'a Heap<L>, usize, &RegionInfo) {
        let info = self.region();
        // SAFETY: the (exposed) address of the heap the thunk was made on,
        // as in `heap`.
        let heap = unsafe { &*std::ptr::with_exposed_provenance::<Heap<L>>(info.owner.get()) };
        (heap, self.fn_ptr.addr() as usize, info)
    }

    /// `Drop` of a `STATIC` thunk.
    #[inline(never)]
    fn release_static(&mut self) {
        if self.word & handle::INLINE_DROP != 0 {
            return self.release_static_dropping();
        }
        let (heap, entry, packed) = self.static_parts();
        // SAFETY: a `STATIC` thunk keeps its slot, packed, and its entry
        // is at `entry`; freed once, here.
        unsafe { heap.free_trampoline_slot(entry, packed) };
    }

    /// [`release_static`](Self::release_static) of a thunk whose inline
    /// closure needs a drop, apart for the same reason as
    /// [`release_granules_dropping`](Self::release_granules_dropping).
    #[inline(never)]
    fn release_static_dropping(&mut self) {
        let (heap, entry, packed) = self.static_parts();
        let data = trampoline::SlotRef::unpack(packed, entry).0.data_slot();
        // SAFETY: as for `GRANULE`; a table's data slot holds its closure
        // as a pair of slots does.
        let moved = unsafe { MovedOut::take(data, handle::INLINE_DROP | handle::PAIR) };
        // SAFETY: as in `release_static`.
        unsafe { heap.free_trampoline_slot(entry, packed) };
        drop(moved);
    }

    /// A `STATIC` thunk's heap, its slot's entry in its table's first page
    /// (from the table's info, which `heap` reads too: a `DynThunk`'s
    /// placement is not `F`'s), and its slot, packed.
    #[inline(always)]
    fn static_parts(&self) -> (&'a Heap<L>, usize, u64) {
        let packed = self.kept() as u64;
        let entry = trampoline::SlotRef::first_entry(packed, self.fn_ptr.addr() as usize);
        (self.heap(), entry, packed)
    }

    /// `Drop` of a `SLOW` thunk.
    #[inline(never)]
    fn release_slow(&mut self) {
        let slow = std::ptr::with_exposed_provenance_mut::<Slow<'_, L>>(self.kept());
        // SAFETY: a `SLOW` thunk owns its box (the word keeps the box's
        // exposed address): a debug thunk's code is taken out of it into
        // quarantine first, and the box is freed once, here, by its own
        // `free` (which knows the box's type).
        unsafe {
            if (*slow).debug.is_some() {
                (*slow).quarantine();
            }
            ((*slow).free)(slow);
        }
    }
}
