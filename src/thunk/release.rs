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
            _ => self.release(),
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

    /// `Drop` of a `STATIC` or `SLOW` thunk.
    #[inline(never)]
    fn release(&mut self) {
        let addr = self.fn_ptr.addr() as usize;
        let inline_drop = self.word & handle::INLINE_DROP != 0;
        match self.kind() {
            handle::STATIC => {
                let heap = self.heap();
                let packed = self.kept() as u64;
                // The slot's entry in the table's first page (from its
                // table's info, which `heap` read: a `DynThunk`'s placement
                // is not `F`'s).
                let addr = trampoline::SlotRef::first_entry(packed, addr);
                let moved = inline_drop.then(|| {
                    let data = trampoline::SlotRef::unpack(packed, addr).0.data_slot();
                    // SAFETY: as for `GRANULE`; a table's data slot holds
                    // its closure as a pair of slots does.
                    unsafe { MovedOut::take(data, handle::INLINE_DROP | handle::PAIR) }
                });
                // SAFETY: a `STATIC` thunk keeps its slot, packed, and its
                // entry is at `addr`; freed once, here.
                unsafe { heap.free_trampoline_slot(addr, packed) };
                drop(moved);
            }
            _ => {
                let slow = std::ptr::with_exposed_provenance_mut::<Slow<'_, L>>(self.kept());
                // SAFETY: a `SLOW` thunk owns its box (the word keeps the
                // box's exposed address): a debug thunk's code is taken out
                // of it into quarantine first, and the box is freed once,
                // here, by its own `free` (which knows the box's type).
                unsafe {
                    if (*slow).debug.is_some() {
                        (*slow).quarantine();
                    }
                    ((*slow).free)(slow);
                }
            }
        }
    }
}
