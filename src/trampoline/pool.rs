//! The trampoline tables of one heap (a heap whose thunks are
//! [`Strategy::StaticTrampolines`](crate::Strategy::StaticTrampolines), or
//! a protect heap's, whose tables are sealed copies):
//! slots are taken and freed under the heap's lock, with the free slots
//! kept here (outside the tables). A table is mapped when every other one
//! is full; one that empties is kept, as an empty heap region is, so that
//! a burst of thunks made and dropped together maps nothing the second
//! time; [`Heap::compact`](crate::Heap::compact) unmaps the empty ones.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{ENTRIES, ENTRY_SIZE, MappedPage, Record, Table, TableCode};
use crate::arch;
use crate::error::Result;
use crate::owner::Owner;

const _: () = assert!(ENTRIES <= u16::MAX as usize + 1);
const _: () = assert!(
    arch::TABLE_KINDS <= 32,
    "a bit per kind in `TableInfo::kinds`"
);

/// The tables of one heap shard.
#[derive(Debug, Default)]
pub(crate) struct TablePool {
    /// The shard (kept in each table's [`TableInfo`]).
    shard: u8,
    tables: Vec<Option<PoolTable>>,
    /// The table to try first.
    hint: usize,
}

#[derive(Debug)]
struct PoolTable {
    table: Table,
    /// Boxed, so that its address stays put while the table lives.
    info: Box<TableInfo>,
    /// Free entries, a stack (the last freed is reused first, while its
    /// record and data slot are warm in the cache).
    free: Vec<u16>,
    live: usize,
    /// Whether a data slot of this table was handed out (its data page may
    /// use memory).
    data_touched: bool,
    /// Units of code (one per kind made) sealed in private memory
    /// ([`TableCode::Sealed`]), which use memory as the file's do not.
    sealed_units: usize,
}

/// What a thunk's handle needs of its table without the shard's lock:
/// where the table is, which one of which shard it is, the heap that owns
/// it, and which of its pages of code are mapped.
#[derive(Debug)]
#[repr(align(8))]
pub(crate) struct TableInfo {
    /// The heap that owns the table (`crate::owner`).
    pub(crate) owner: Owner,
    base: usize,
    table: u32,
    /// A bit per kind of placement whose page of code is mapped: set (with
    /// release ordering, under the shard's lock) once the page is, never
    /// cleared while the table lives.
    kinds: AtomicU32,
    shard: u8,
}

impl TableInfo {
    /// Whether the table's page of `kind` is mapped, so that its entries
    /// can be handed out.
    #[inline(always)]
    pub(crate) fn has_kind(&self, kind: usize) -> bool {
        self.kinds.load(Ordering::Acquire) & (1 << kind) != 0
    }

    /// The table's index in its shard's pool, and the shard.
    pub(crate) fn place(&self) -> (u32, u8) {
        (self.table, self.shard)
    }
}

/// Where a taken slot is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotRef {
    table: u32,
    index: u32,
    /// The entry's address (an integer, so that handles take their auto
    /// traits from the heap they borrow).
    entry: usize,
    /// The table's info (an exposed address, likewise).
    info: usize,
}

impl SlotRef {
    /// The entry's address: the thunk's function pointer.
    pub(crate) fn entry(&self) -> usize {
        self.entry
    }

    /// The slot in one word besides its entry's address: its table's info
    /// (aligned to 8, so three low bits are free).
    pub(crate) fn pack(&self) -> u64 {
        self.info as u64
    }

    /// The slot [`pack`](Self::pack)ed into `packed`, whose entry is at
    /// `entry`, and its shard.
    pub(crate) fn unpack(packed: u64, entry: usize) -> (SlotRef, u8) {
        let info = Self::info_of(packed);
        let slot = SlotRef {
            table: info.table,
            index: ((entry - info.base) / ENTRY_SIZE) as u32,
            entry,
            info: packed as usize,
        };
        (slot, info.shard)
    }

    /// The entry in its table's first page of the slot [`pack`](Self::pack)ed
    /// into `packed` whose entry in some page of the table is at `addr`
    /// (a thunk's function pointer, whatever its placement's kind).
    #[inline(always)]
    pub(crate) fn first_entry(packed: u64, addr: usize) -> usize {
        let base = Self::info_of(packed).base;
        // A slot's entries are `KIND_STRIDE` apart, and every entry of the
        // first page is less than that past its base.
        base + (addr - base) % super::KIND_STRIDE
    }

    /// The table info a [`pack`](Self::pack)ed slot names.
    pub(crate) fn info_of<'t>(packed: u64) -> &'t TableInfo {
        // SAFETY: `packed` is the exposed address of a live table's boxed
        // info (a taken slot keeps its table mapped).
        unsafe { &*std::ptr::with_exposed_provenance::<TableInfo>(packed as usize) }
    }

    /// The slot's data slot (`Table::data_slot`), from its entry's address.
    #[inline]
    pub(crate) fn data_slot(&self) -> NonNull<u8> {
        super::table::data_slot_of(self.entry, self.index as usize)
    }
}

const _: () = assert!(ENTRIES < 1 << 24);

impl TablePool {
    /// The tables of shard `shard`, none mapped yet.
    pub(crate) fn new(shard: u8) -> Self {
        TablePool {
            shard,
            ..TablePool::default()
        }
    }

    /// Tables currently mapped.
    pub(crate) fn tables(&self) -> usize {
        self.tables.iter().flatten().count()
    }

    /// Pages of the tables that use memory: every record page, the data
    /// pages a slot was handed out on, and sealed pages of code (a page
    /// mapped from the binary's file is its own, in the page cache).
    pub(crate) fn committed_pages(&self) -> usize {
        let per_part = super::TABLE_SIZE / crate::sys::page_size();
        self.tables
            .iter()
            .flatten()
            .map(|t| per_part * (1 + usize::from(t.data_touched) + t.sealed_units))
            .sum()
    }

    /// Bytes of bookkeeping (outside the tables).
    pub(crate) fn metadata_bytes(&self) -> usize {
        self.tables.capacity() * std::mem::size_of::<Option<PoolTable>>()
            + self
                .tables
                .iter()
                .flatten()
                .map(|t| t.free.capacity() * std::mem::size_of::<u16>())
                .sum::<usize>()
    }

    /// Takes a free slot and publishes the record `rec` makes (from the
    /// slot's data slot, handed out when `want_data` is set), having made
    /// the table's page of `kind` (from `code`) if it was not yet. When every table is
    /// full, `map` maps a new one (the heap reserves its address space
    /// there). On error no slot was taken.
    ///
    /// # Errors
    ///
    /// What `map` returns ([`Error::HeapExhausted`](crate::Error::HeapExhausted)
    /// past the heap's limit, and the like), or what
    /// [`ensure_kind`](Self::ensure_kind) does.
    pub(crate) fn take(
        &mut self,
        kind: usize,
        rec: impl FnOnce(Option<NonNull<u8>>) -> Record,
        want_data: bool,
        code: TableCode,
        map: impl FnOnce() -> Result<Table>,
    ) -> Result<(SlotRef, Option<NonNull<u8>>, Option<MappedPage>)> {
        let t = self.table_with_room(map)?;
        let page = self.ensure_kind(t as u32, kind, code)?;
        let (slot, data) = self.take_in(t, want_data);
        let pt = self.tables[t].as_ref().expect("a live table");
        pt.table.publish(slot.index as usize, rec(data));
        Ok((slot, data, page))
    }

    /// Takes a slot whose record stays retired (pointing at the trap
    /// target, as every free slot's does) and whose data slot may be used:
    /// a ready slot, published later by its owner
    /// ([`publish_at`](super::table::publish_at)) once its table has the
    /// page of its kind. As [`take`](Self::take) otherwise.
    ///
    /// # Errors
    ///
    /// What `map` returns.
    pub(crate) fn take_ready(&mut self, map: impl FnOnce() -> Result<Table>) -> Result<SlotRef> {
        let t = self.table_with_room(map)?;
        Ok(self.take_in(t, true).0)
    }

    /// Makes table `table`'s page of code for `kind` from `code` unless it
    /// already is.
    ///
    /// # Errors
    ///
    /// As [`Table::map_kind`].
    pub(crate) fn ensure_kind(
        &mut self,
        table: u32,
        kind: usize,
        code: TableCode,
    ) -> Result<Option<MappedPage>> {
        let pt = self.tables[table as usize].as_mut().expect("a live table");
        if pt.info.has_kind(kind) {
            return Ok(None);
        }
        let page = pt.table.map_kind(code, kind)?;
        if code == TableCode::Sealed {
            pt.sealed_units += 1;
        }
        // Release: a thread that sees the bit sees the page mapped.
        pt.info.kinds.fetch_or(1 << kind, Ordering::Release);
        Ok(Some(page))
    }

    /// A table with a free slot: the hinted one, else the first, else a
    /// new one from `map`.
    fn table_with_room(&mut self, map: impl FnOnce() -> Result<Table>) -> Result<usize> {
        let found = self
            .tables
            .get(self.hint)
            .and_then(Option::as_ref)
            .filter(|t| t.live < ENTRIES)
            .map(|_| self.hint)
            .or_else(|| {
                self.tables
                    .iter()
                    .position(|t| t.as_ref().is_some_and(|t| t.live < ENTRIES))
            });
        match found {
            Some(t) => Ok(t),
            None => Ok(self.add(map()?)),
        }
    }

    /// Takes a free slot of table `t`, which has one, and its data slot if
    /// `want_data`.
    fn take_in(&mut self, t: usize, want_data: bool) -> (SlotRef, Option<NonNull<u8>>) {
        let pt = self.tables[t].as_mut().expect("a live table");
        let index = usize::from(
            pt.free
                .pop()
                .expect("a table that is not full has a free slot"),
        );
        pt.live += 1;
        let data = want_data.then(|| {
            pt.data_touched = true;
            pt.table.data_slot(index)
        });
        self.hint = t;
        let slot = SlotRef {
            table: t as u32,
            index: index as u32,
            entry: pt.table.entry(index),
            info: std::ptr::from_ref::<TableInfo>(&pt.info).expose_provenance(),
        };
        (slot, data)
    }

    #[cold]
    fn add(&mut self, table: Table) -> usize {
        let index = self
            .tables
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.tables.len());
        let info = Box::new(TableInfo {
            owner: Owner::default(),
            base: table.entry(0),
            table: index as u32,
            kinds: AtomicU32::new(0),
            shard: self.shard,
        });
        let pt = PoolTable {
            table,
            info,
            // Popped from the end: entry 0 first.
            free: (0..ENTRIES as u16).rev().collect(),
            live: 0,
            data_touched: false,
            sealed_units: 0,
        };
        if index == self.tables.len() {
            self.tables.push(Some(pt));
        } else {
            self.tables[index] = Some(pt);
        }
        index
    }

    /// Frees a slot: its record points to the trap target at once. A table
    /// that empties stays mapped, as an empty heap region does, for the
    /// next burst of thunks to reuse without mapping and sealing again
    /// ([`release_empty`](Self::release_empty), from
    /// [`Heap::compact`](crate::Heap::compact), unmaps it).
    pub(crate) fn release(&mut self, slot: &SlotRef) {
        let t = slot.table as usize;
        let pt = self.tables[t].as_mut().expect("a live slot's table");
        pt.table.retire(slot.index as usize);
        pt.free.push(slot.index as u16);
        pt.live -= 1;
        self.hint = t;
    }

    /// Unmaps every empty table. Returns the bytes released.
    pub(crate) fn release_empty(&mut self) -> usize {
        let mut released = 0;
        for slot in &mut self.tables {
            if slot.as_ref().is_some_and(|t| t.live == 0) {
                *slot = None;
                released += Table::reserved_bytes();
            }
        }
        self.trim();
        released
    }

    fn trim(&mut self) {
        while matches!(self.tables.last(), Some(None)) {
            self.tables.pop();
        }
        if self.hint >= self.tables.len() {
            self.hint = 0;
        }
    }
}
