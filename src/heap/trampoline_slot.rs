//! The heap's side of static trampolines (the feature itself is
//! `crate::trampoline`): taking and freeing a slot under the heap's lock,
//! with the heap's accounting, and [`TrampolineSlot`], the handle a thunk
//! owns.

use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Heap;
use crate::error::{Error, Result};
use crate::strategy::{Strategy, ThunkStrategy};
use crate::trampoline::{self, ENTRY_SIZE, Record, SlotRef, Table};

/// A thunk's slot in a static trampoline table of `heap`; freed on drop.
pub(crate) struct TrampolineSlot<'h, L: RawMutex> {
    heap: &'h Heap<L>,
    slot: SlotRef,
    /// The shard whose tables hold the slot.
    shard: u8,
}

impl<'h, L: RawMutex> TrampolineSlot<'h, L> {
    /// The entry's address: the thunk's function pointer.
    pub(crate) fn entry(&self) -> usize {
        self.slot.entry()
    }

    /// The slot's data slot.
    pub(crate) fn data_slot(&self) -> NonNull<u8> {
        self.slot.data_slot()
    }

    /// The slot in one word (its entry's address aside), for a thunk's
    /// handle; [`from_packed`](Self::from_packed) takes it back.
    pub(crate) fn into_packed(self) -> u64 {
        let packed = self.slot.pack(self.shard);
        std::mem::forget(self);
        packed
    }

    /// The slot of `heap` that [`into_packed`](Self::into_packed) gave
    /// `packed` for, whose entry is at `entry`.
    ///
    /// # Safety
    /// `packed` and `entry` came from one slot of `heap`, which is taken
    /// back once.
    pub(crate) unsafe fn from_packed(heap: &'h Heap<L>, entry: usize, packed: u64) -> Self {
        let (slot, shard) = SlotRef::unpack(packed, entry);
        TrampolineSlot { heap, slot, shard }
    }
}

impl<L: RawMutex> Drop for TrampolineSlot<'_, L> {
    fn drop(&mut self) {
        let mut state = self.heap.shard(self.shard).lock();
        let unmapped = state.tables.release(&self.slot);
        self.heap.space.release(unmapped);
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
        let (shard, locked) = self.my_shard();
        let mut state = locked.lock();
        let state = &mut *state;
        let space = &self.space;
        let (slot, data) = state.tables.take(rec, want_data, || {
            let bytes = Table::reserved_bytes();
            space.reserve(bytes)?;
            let source = trampoline::source().map_err(|reason| Error::StrategyUnavailable {
                strategy: Strategy::StaticTrampolines,
                reason: reason.to_owned(),
            });
            let table = source.and_then(Table::map);
            if table.is_err() {
                space.release(bytes);
            }
            table
        })?;
        state.live += 1;
        state.bytes_in_use += ENTRY_SIZE;
        Ok((
            TrampolineSlot {
                heap: self,
                slot,
                shard: shard as u8,
            },
            data,
        ))
    }
}
