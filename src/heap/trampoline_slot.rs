//! The heap's side of static trampolines (the feature itself is
//! `crate::trampoline`): taking and freeing a slot under the heap's lock,
//! with the heap's accounting, and [`TrampolineSlot`], the handle a thunk
//! owns.

use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Heap;
use crate::error::Result;
use crate::strategy::ThunkStrategy;
use crate::trampoline::{ENTRY_SIZE, Record, SlotRef};

/// A thunk's slot in a static trampoline table of `heap`; freed on drop.
pub(crate) struct TrampolineSlot<'h, L: RawMutex> {
    heap: &'h Heap<L>,
    slot: SlotRef,
}

impl<'h, L: RawMutex> TrampolineSlot<'h, L> {
    /// The entry's address: the thunk's function pointer.
    pub(crate) fn entry(&self) -> usize {
        self.slot.entry()
    }

    /// The heap the slot belongs to.
    pub(crate) fn heap(&self) -> &'h Heap<L> {
        self.heap
    }
}

impl<L: RawMutex> Drop for TrampolineSlot<'_, L> {
    fn drop(&mut self) {
        let mut state = self.heap.state.lock();
        let unmapped = state.tables.release(&self.slot);
        state.reserved -= unmapped;
        state.live -= 1;
        state.bytes_in_use -= ENTRY_SIZE;
    }
}

impl<L: RawMutex> Heap<L> {
    /// Takes a slot in a static trampoline table and publishes its record.
    ///
    /// # Errors
    ///
    /// As [`TablePool::take`](crate::trampoline::TablePool::take), with the
    /// heap's [`max_reserved`](super::HeapBuilder::max_reserved) as the
    /// limit.
    ///
    /// `rec` makes the record from the slot's data slot, handed out (and
    /// passed) when `want_data` is set: private memory for a small closure,
    /// which the caller writes before the slot's entry is published
    /// anywhere.
    pub(crate) fn trampoline(
        &self,
        rec: impl FnOnce(Option<NonNull<u8>>) -> Record,
        want_data: bool,
    ) -> Result<(TrampolineSlot<'_, L>, Option<NonNull<u8>>)> {
        debug_assert_eq!(self.thunk_strategy(), ThunkStrategy::StaticTrampolines);
        let mut state = self.state.lock();
        let state = &mut *state;
        let (slot, data, mapped) =
            state
                .tables
                .take(rec, want_data, state.reserved, self.config.max_reserved)?;
        if mapped {
            state.reserved += crate::trampoline::Table::reserved_bytes();
        }
        state.live += 1;
        state.bytes_in_use += ENTRY_SIZE;
        Ok((TrampolineSlot { heap: self, slot }, data))
    }
}
