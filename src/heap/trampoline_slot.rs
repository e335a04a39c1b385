//! The heap's side of static trampolines (the feature itself is
//! `crate::trampoline`): taking and freeing slots with the heap's
//! accounting. The thunks of small closures take a *ready* slot (taken in
//! its table, its record retired) from this thread's cache on the global
//! heap or from the shard's magazine, publish its record themselves, and
//! give it back the same way ([`Heap::trampoline_slot`],
//! [`Heap::free_trampoline_slot`]); other thunks hold a
//! [`TrampolineSlot`], taken and freed under the shard's lock.

use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Heap;
use super::allocator::State;
use super::fork::Stamp;
use super::ready::{MAGAZINE_DEPTH, Magazine, ReadySlot};
use super::reentry;
use super::shard::OneShardAtATime;
use super::thread_cache::{REFILL, SLOTS};
use crate::error::{Error, Result};
use crate::strategy::Strategy;
use crate::trampoline::{self, ENTRY_SIZE, Record, SlotRef, Table, TableCode};

/// A static-trampoline thunk's slot, as its handle keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotThunk {
    /// The entry's address: the thunk's function pointer.
    pub(crate) entry: usize,
    /// The slot, packed ([`SlotRef::pack`]).
    pub(crate) packed: u64,
    /// The slot's data slot.
    pub(crate) data: NonNull<u8>,
}

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

    /// The slot in one word (its entry's address aside), for a thunk's
    /// handle, which frees it with [`Heap::free_trampoline_slot`].
    pub(crate) fn into_packed(self) -> u64 {
        let packed = self.slot.pack();
        std::mem::forget(self);
        packed
    }
}

impl<L: RawMutex> Drop for TrampolineSlot<'_, L> {
    fn drop(&mut self) {
        let Some(mut state) = self.heap.shard(self.shard).enter() else {
            // Re-entered (`reentry.rs`): given back when this thread leaves.
            let ready = ReadySlot {
                entry: self.slot.entry(),
                packed: self.slot.pack(),
            };
            self.heap.defer_slot_free(ready);
            return;
        };
        state.tables.release(&self.slot);
        state.live -= 1;
        state.bytes_in_use -= ENTRY_SIZE;
    }
}

impl<L: RawMutex> Heap<L> {
    /// Takes a slot in a static trampoline table whose page of `kind` is
    /// mapped ([`trampoline::kind_of`]), and publishes its record.
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
        kind: usize,
        rec: impl FnOnce(Option<NonNull<u8>>) -> Record,
        want_data: bool,
    ) -> Result<(TrampolineSlot<'_, L>, Option<NonNull<u8>>)> {
        debug_assert!(self.table_code().is_some());
        let (shard, locked) = self.my_shard();
        let mut guard = locked.enter().ok_or_else(reentry::reentered)?;
        let state = &mut *guard;
        let code = self.table_code().expect("a heap of table thunks");
        let (slot, data, page) = state
            .tables
            .take(kind, rec, want_data, code, || self.map_table())?;
        state.live += 1;
        state.bytes_in_use += ENTRY_SIZE;
        drop(guard);
        if let Some(page) = page {
            page.note();
        }
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

impl<L: RawMutex> Heap<L> {
    /// Maps a new trampoline table, within the heap's address-space limit.
    fn map_table(&self) -> Result<Table> {
        let bytes = Table::reserved_bytes();
        self.space.reserve(bytes)?;
        // Static trampolines need the binary's file (a sealed table copies
        // the text instead).
        let source = match self.table_code() {
            Some(TableCode::Image) => {
                trampoline::source()
                    .map(drop)
                    .map_err(|reason| Error::StrategyUnavailable {
                        strategy: Strategy::StaticTrampolines,
                        reason: reason.to_owned(),
                    })
            }
            _ => Ok(()),
        };
        let table = source.and_then(|()| Table::map());
        if table.is_err() {
            self.space.release(bytes);
        }
        table
    }

    /// A slot for a small closure's thunk of placement kind `kind` with its
    /// record published (`rec` makes it from the slot's data slot, which the
    /// caller writes before the entry's pointer is published anywhere): a
    /// ready slot when one can be had
    /// ([`trampoline_slot_fast`](Self::trampoline_slot_fast)), else one
    /// taken under the shard's lock.
    ///
    /// # Errors
    ///
    /// As [`trampoline`](Self::trampoline).
    pub(crate) fn trampoline_slot(
        &self,
        kind: usize,
        rec: impl FnOnce(NonNull<u8>) -> Record + Copy,
    ) -> Result<SlotThunk> {
        if let Some(slot) = self.trampoline_slot_fast(kind, rec) {
            return Ok(slot);
        }
        let (slot, data) = self.trampoline(kind, |data| rec(data.expect("asked for")), true)?;
        let entry = slot.entry();
        let slot = SlotThunk {
            entry,
            packed: slot.into_packed(),
            data: data.expect("a data slot was asked for"),
        };
        self.own_slot(&slot);
        Ok(slot)
    }

    /// [`trampoline_slot`](Self::trampoline_slot) from a ready slot only:
    /// this thread's cache on the global heap, else the shard's magazine
    /// (one lock round trip); `None` when none can be had, or its table's
    /// page of `kind` cannot be mapped (nothing changed).
    #[inline(always)]
    pub(crate) fn trampoline_slot_fast(
        &self,
        kind: usize,
        rec: impl FnOnce(NonNull<u8>) -> Record,
    ) -> Option<SlotThunk> {
        debug_assert!(self.table_code().is_some());
        let cached = self.caches.and_then(|caches| {
            caches.with(SLOTS, |magazines| {
                let magazine = &mut magazines.slots;
                let now = Stamp::now();
                magazine.pop(now).or_else(|| {
                    self.refill_slots(magazine, now);
                    magazine.pop(now)
                })
            })
        });
        let ReadySlot { entry, packed } = match cached {
            Some(ready) => ready?,
            None => self.ready_slot_locked()?,
        };
        if !SlotRef::info_of(packed).has_kind(kind) && !self.map_kind(packed, kind) {
            // SAFETY: the ready slot is ours (popped) and in this heap; it
            // goes back as a thunk's slot would.
            unsafe { self.free_trampoline_slot(entry, packed) };
            return None;
        }
        let data = SlotRef::unpack(packed, entry).0.data_slot();
        // SAFETY: a ready slot is taken in its live table and ours now
        // (popped); its record is retired, so publishing it is the owner's.
        // Its table's page of `kind` is mapped, so the entry the thunk's
        // pointer names runs the table's code.
        unsafe { trampoline::publish_at(entry, rec(data)) };
        let slot = SlotThunk {
            entry,
            packed,
            data,
        };
        self.own_slot(&slot);
        Some(slot)
    }

    /// Maps the page of `kind` of the table of the (ready) slot `packed`,
    /// under its shard's lock, unless another thread did: whether it is
    /// mapped now.
    #[cold]
    #[inline(never)]
    fn map_kind(&self, packed: u64, kind: usize) -> bool {
        let (table, shard) = SlotRef::info_of(packed).place();
        let Some(mut state) = self.shard(shard).enter() else {
            return false;
        };
        let code = self.table_code().expect("a heap of table thunks");
        let mapped = state.tables.ensure_kind(table, kind, code);
        drop(state);
        match mapped {
            Ok(page) => {
                if let Some(page) = page {
                    page.note();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Records this heap as the owner of `slot`'s table: the handle finds
    /// its heap there (`crate::owner`).
    #[inline(always)]
    fn own_slot(&self, slot: &SlotThunk) {
        SlotRef::info_of(slot.packed)
            .owner
            .set(std::ptr::from_ref(self).expose_provenance());
    }

    /// A ready slot from this thread's shard's magazine (filled when
    /// empty), under the shard's lock. Inline: on a heap without thread
    /// caches this is the fast path.
    #[inline(always)]
    fn ready_slot_locked(&self) -> Option<ReadySlot> {
        let (_, locked) = self.my_shard();
        let mut state = locked.enter()?;
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let now = Stamp::now();
        match state.ready.slots.pop(now) {
            Some(ready) => Some(ready),
            None => self.refill_shard_slots(&mut state, now),
        }
    }

    /// The shard's magazine of slots found empty (or of an older stamp):
    /// flushed, filled, and one popped.
    #[cold]
    #[inline(never)]
    fn refill_shard_slots(&self, state: &mut State, now: Stamp) -> Option<ReadySlot> {
        if !state.ready.slots.is_current(now) {
            let stale: Vec<ReadySlot> = state.ready.slots.take(MAGAZINE_DEPTH).collect();
            for slot in stale {
                self.release_slot_locked(state, slot);
            }
        }
        self.fill_slots(state, |state, slot| state.ready.slots.push(slot, now));
        state.ready.slots.pop(now)
    }

    /// Frees a static-trampoline thunk's slot: its record is retired (a
    /// stale call stops at the trap) and the slot goes back to this
    /// thread's cache or the shard's magazine, else to its table.
    ///
    /// # Safety
    /// `entry` and `packed` are a [`SlotThunk`] of this heap, freed once.
    #[inline(never)]
    pub(crate) unsafe fn free_trampoline_slot(&self, entry: usize, packed: u64) {
        // SAFETY: the thunk's own slot, in a live table (it is taken).
        unsafe { trampoline::retire_at(entry) };
        let ready = ReadySlot { entry, packed };
        let cached = self.caches.and_then(|caches| {
            caches.with(SLOTS, |magazines| {
                let now = Stamp::now();
                if let Err(ready) = magazines.slots.push(ready, now) {
                    self.give_back_slots(&mut magazines.slots.take(REFILL));
                    if let Err(ready) = magazines.slots.push(ready, now) {
                        self.give_back_slots(&mut std::iter::once(ready));
                    }
                }
            })
        });
        if cached.is_none() {
            self.free_slot_locked(ready);
        }
    }

    /// [`free_trampoline_slot`](Self::free_trampoline_slot) under the
    /// shard's lock: into the shard's magazine, or back to its table.
    /// Inline: on a heap without thread caches this is the fast path.
    #[inline(always)]
    fn free_slot_locked(&self, ready: ReadySlot) {
        let (_, shard) = SlotRef::unpack(ready.packed, ready.entry);
        let Some(mut state) = self.shard(shard).enter() else {
            self.defer_slot_free(ready);
            return;
        };
        let now = Stamp::now();
        if let Err(ready) = state.ready.slots.push(ready, now) {
            self.release_slot_cold(&mut state, ready);
        }
    }

    /// [`release_slot_locked`](Self::release_slot_locked), out of the
    /// free's fast path.
    #[cold]
    #[inline(never)]
    fn release_slot_cold(&self, state: &mut State, ready: ReadySlot) {
        self.release_slot_locked(state, ready);
    }

    /// Fills `magazine` with up to [`REFILL`] ready slots of this thread's
    /// shard, after giving back any it holds of an older stamp.
    #[cold]
    #[inline(never)]
    fn refill_slots(&self, magazine: &mut Magazine<ReadySlot>, now: Stamp) {
        if !magazine.is_current(now) {
            self.give_back_slots(&mut magazine.take(MAGAZINE_DEPTH));
        }
        let (_, locked) = self.my_shard();
        // Re-entered: the magazine stays empty and the caller takes the
        // locked path, which says why.
        let Some(mut state) = locked.enter() else {
            return;
        };
        self.fill_slots(&mut state, |_, slot| magazine.push(slot, now));
    }

    /// Takes up to [`REFILL`] ready slots in a shard's tables (its state is
    /// `state`) and hands each to `push`; stops early where a
    /// table cannot be mapped or `push` refuses.
    fn fill_slots(
        &self,
        state: &mut State,
        mut push: impl FnMut(&mut State, ReadySlot) -> std::result::Result<(), ReadySlot>,
    ) {
        for _ in 0..REFILL {
            let Ok(slot) = state.tables.take_ready(|| self.map_table()) else {
                break;
            };
            state.live += 1;
            state.bytes_in_use += ENTRY_SIZE;
            let ready = ReadySlot {
                entry: slot.entry(),
                packed: slot.pack(),
            };
            if let Err(ready) = push(state, ready) {
                self.release_slot_locked(state, ready);
                break;
            }
        }
    }

    /// Gives ready slots back to their tables.
    /// Consecutive slots of one shard are released under one lock round
    /// trip (never two locks at once).
    pub(super) fn give_back_slots(&self, slots: &mut dyn Iterator<Item = ReadySlot>) {
        let mut locks = OneShardAtATime::new();
        for ready in slots {
            let (_, shard) = SlotRef::unpack(ready.packed, ready.entry);
            match locks.lock(self, shard) {
                Some((state, _)) => self.release_slot_locked(state, ready),
                None => self.defer_slot_free(ready),
            }
        }
    }

    /// Gives `ready` back when this thread leaves the shard it is inside
    /// of (`reentry.rs`).
    #[cold]
    #[inline(never)]
    fn defer_slot_free(&self, ready: ReadySlot) {
        unsafe fn later<L: RawMutex>(heap: *const (), w: [usize; reentry::ARGS]) {
            // SAFETY: `defer`'s contract: the heap outlives its tables and
            // slots, and this one was not given back yet.
            let heap = unsafe { &*heap.cast::<Heap<L>>() };
            let ready = ReadySlot {
                entry: w[0],
                packed: (w[2] as u64) << 32 | (w[1] as u32 as u64),
            };
            heap.give_back_slots(&mut std::iter::once(ready));
        }
        let _ = reentry::defer(reentry::Deferred {
            run: later::<L>,
            heap: std::ptr::from_ref(self).cast(),
            args: [
                ready.entry,
                ready.packed as u32 as usize,
                (ready.packed >> 32) as usize,
                0,
                0,
                0,
            ],
        });
    }

    /// Gives a ready slot back to its table, in the shard whose state is
    /// `state`.
    pub(super) fn release_slot_locked(&self, state: &mut State, ready: ReadySlot) {
        let (slot, _) = SlotRef::unpack(ready.packed, ready.entry);
        state.tables.release(&slot);
        state.live -= 1;
        state.bytes_in_use -= ENTRY_SIZE;
    }
}
