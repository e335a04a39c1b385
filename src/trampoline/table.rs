//! One mapped trampoline table and its page of records: making its pages
//! of code (mapped from the binary's file, or copied and sealed), and
//! publishing and retiring records.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::builtin::Unit;
use super::{
    CODE_SIZE, ENTRIES, ENTRY_SIZE, KIND_STRIDE, Record, TABLE_SIZE, TableCode, record_distance,
};
use crate::arch;
use crate::data_slot::TABLE_DATA_SLOT;
use crate::error::{Error, Result};
use crate::strategy::Strategy;
use crate::sys::{Mapping, Prot};

/// Words per record: `[ctx, entry, stack_args, target]`.
const RECORD_WORDS: usize = ENTRY_SIZE / std::mem::size_of::<usize>();
const TARGET: usize = 3;

/// One table and its record page: mapped (and unmapped when dropped), or a
/// unit of the table compiled into the image (given back when dropped).
/// The pool drops a table only when none of its entries is live, or with
/// its heap, which every thunk borrows.
#[derive(Debug)]
pub(crate) struct Table {
    /// The first entry of the page of kind 0.
    base: usize,
    place: Place,
}

#[derive(Debug)]
enum Place {
    /// The three parts: the table's code (`CODE_SIZE` bytes, mapped over
    /// the first part from the binary's file), the records and the data
    /// slots (`TABLE_SIZE` bytes each; `TABLE_DATA_SLOT` bytes per slot, for
    /// small closures).
    Mapped(Mapping),
    /// A unit of the table compiled into the image: its code is in the
    /// image's text already, its records and data slots in the image's
    /// records section.
    /// (The unit is held until the table drops: never read.)
    Builtin(#[allow(dead_code)] Unit),
}

/// The record of the slot whose entry in the first page is at `entry`.
#[inline(always)]
fn record_of(entry: usize) -> *mut usize {
    std::ptr::with_exposed_provenance_mut::<usize>(entry + record_distance())
}

/// The target word of the record of the entry at `entry`.
///
/// # Safety
/// `entry` is an entry of a live table.
unsafe fn target_of<'t>(entry: usize) -> &'t AtomicUsize {
    // SAFETY: the target word is an aligned `usize` in the record page,
    // which lives as long as the table (the caller's contract); it is only
    // accessed atomically (here and by the trampoline's load, which x86_64
    // and AArch64 make single-copy atomic for an aligned word).
    unsafe { AtomicUsize::from_ptr(record_of(entry).add(TARGET)) }
}

/// Fills the record of the entry at `entry` (`[ctx, entry, stack_args]`
/// and the target), the target last with release ordering: a thread that
/// reaches the entry through the thunk's published pointer sees the whole
/// record.
///
/// # Safety
/// `entry` is an entry of a live table whose slot the caller owns.
#[inline]
pub(crate) unsafe fn publish_at(entry: usize, rec: Record) {
    let record = record_of(entry);
    for (w, value) in rec.words.into_iter().enumerate() {
        // SAFETY: inside the entry's record, which only its owner writes;
        // the trampoline does not read these words while the target is the
        // trap (set when the slot was freed).
        unsafe { record.add(w).write(value) };
    }
    const { assert!(RECORD_WORDS == 4) };
    // SAFETY: the caller's contract.
    unsafe { target_of(entry) }.store(rec.target, Ordering::Release);
}

/// Points the record of the entry at `entry` at the trap target: a stale
/// call through the entry stops at once.
///
/// # Safety
/// `entry` is an entry of a live table whose slot the caller owns (or
/// the pool, freeing it).
#[inline]
pub(crate) unsafe fn retire_at(entry: usize) {
    // SAFETY: the caller's contract.
    unsafe { target_of(entry) }.store(arch::trampoline_freed(), Ordering::Release);
}

/// Points the record of the entry at `entry` at `target` instead of its
/// entry function: debug mode's quarantine diverts a dropped thunk's entry
/// to its report this way, leaving the other words as they are.
///
/// # Safety
/// `entry` is an entry of a live table whose slot the caller owns; the
/// record's word 2 points to what `target` reads, if anything.
#[inline]
pub(crate) unsafe fn divert_at(entry: usize, target: usize) {
    // SAFETY: the caller's contract.
    unsafe { target_of(entry) }.store(target, Ordering::Release);
}

/// The data slot of entry `index`, whose address is `entry` ([`Table::data_slot`] without the table):
/// past the records by [`KIND_STRIDE`].
#[inline]
pub(crate) fn data_slot_of(entry: usize, index: usize) -> NonNull<u8> {
    let base = entry - index * ENTRY_SIZE;
    let slot = base + record_distance() + KIND_STRIDE + index * TABLE_DATA_SLOT;
    NonNull::new(slot as *mut u8).expect("inside a live table's mapping")
}
const _: () = assert!(ENTRIES * TABLE_DATA_SLOT <= TABLE_SIZE);

/// A page of a table's code just mapped, to be entered in perf's map by
/// [`note`](Self::note) once no lock is held (the map's file I/O never
/// runs under a heap's lock).
#[must_use = "a new page is entered in perf's map with `note`, outside any lock"]
pub(crate) struct MappedPage {
    at: usize,
    kind: usize,
    /// A sealed copy, which gets no line: perf reads the map for its
    /// anonymous memory and would name every thunk in it by the page's
    /// line, not by the thunk's own.
    sealed: bool,
}

impl MappedPage {
    /// Enters the page in perf's map (when that is on).
    pub(crate) fn note(self) {
        if self.sealed {
            return;
        }
        crate::perf_map::record(|| {
            let name = format!(
                "wxthunk static trampolines (page {} of the table)",
                self.kind
            );
            (self.at, TABLE_SIZE, name)
        });
    }
}

impl Table {
    /// Maps a table with no page of code yet (the code part is reserved,
    /// inaccessible, until [`map_kind`](Self::map_kind)), or takes a unit
    /// of the table compiled into the image, with every record pointing to
    /// the trap target.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if a mapping fails; [`Error::TrampolinesExhausted`]
    /// when every unit of the built-in table is taken.
    pub(crate) fn map() -> Result<Table> {
        let (base, place) = if arch::BUILTIN_UNITS != 0 {
            let unit = Unit::take()?;
            (unit.base(), Place::Builtin(unit))
        } else {
            let mapping = Mapping::anon(Self::reserved_bytes(), Prot::ReadWrite)
                .map_err(|e| Error::os("mmap (trampoline table)", e))?;
            // SAFETY: the code part of our fresh mapping; nothing uses it.
            unsafe { mapping.protect(0, CODE_SIZE, Prot::None) }.map_err(|e| {
                Error::os("mprotect(PROT_NONE) of the trampoline table's code part", e)
            })?;
            (mapping.as_ptr() as usize, Place::Mapped(mapping))
        };
        let table = Table { base, place };
        for i in 0..ENTRIES {
            table.retire(i);
        }
        Ok(table)
    }

    /// Makes the table's page of code for `kind`: mapped read+exec from
    /// the binary's file ([`TableCode::Image`]), or copied from the text
    /// and sealed ([`TableCode::Sealed`]). Either way it then holds the
    /// table's code. Only pages of kinds in use are made: a mapped one is a
    /// page of the binary's file (page cache, counted in the process's
    /// resident size while mapped), a sealed one a private page. A table
    /// compiled into the image has every kind's pages already.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if a mapping or `mprotect` fails;
    /// [`Error::StrategyUnavailable`] if the file no longer holds the
    /// table's code (the page is then made inaccessible again), if the
    /// file cannot be found, or if the table has no page for `kind`
    /// (System V's registers in a Windows image).
    pub(crate) fn map_kind(&self, code: TableCode, kind: usize) -> Result<MappedPage> {
        if kind >= arch::TABLE_KINDS {
            return Err(Error::StrategyUnavailable {
                strategy: Strategy::StaticTrampolines,
                reason: "the trampoline table has no page for this calling convention's \
                         context placement (System V's registers, for extern \"sysv64\", on \
                         Windows)"
                    .into(),
            });
        }
        let mapping = match &self.place {
            Place::Builtin(_) => {
                return Ok(MappedPage {
                    at: self.base + kind * KIND_STRIDE,
                    kind,
                    sealed: false,
                });
            }
            Place::Mapped(mapping) => mapping,
        };
        let offset = kind * TABLE_SIZE;
        match code {
            TableCode::Image => map_from_image(mapping, offset)?,
            TableCode::Sealed => seal_copy(mapping, offset)?,
        }
        Ok(MappedPage {
            at: mapping.at(offset).as_ptr() as usize,
            kind,
            sealed: code == TableCode::Sealed,
        })
    }

    /// The address of slot `i`'s entry in the first page (its entry in
    /// the page of a placement is [`entry_offset`](super::entry_offset)
    /// further).
    pub(crate) fn entry(&self, i: usize) -> usize {
        debug_assert!(i < ENTRIES);
        self.base + i * ENTRY_SIZE
    }

    /// Fills record `i` (`[ctx, entry, stack_args]` and the target), the
    /// target last with release ordering: a thread that reaches the entry
    /// through the thunk's published pointer sees the whole record.
    ///
    /// Only the owner of slot `i` may call this.
    pub(crate) fn publish(&self, i: usize, rec: Record) {
        // SAFETY: entry `i` of this live table; its owner calls.
        unsafe { publish_at(self.entry(i), rec) }
    }

    /// Points record `i` at the trap target: a stale call through the entry
    /// stops at once.
    pub(crate) fn retire(&self, i: usize) {
        // SAFETY: entry `i` of this live table.
        unsafe { retire_at(self.entry(i)) }
    }

    /// The data slot of entry `i`: private read-write memory,
    /// `TABLE_DATA_SLOT` bytes aligned to their size, for the closure of the thunk holding
    /// slot `i`.
    pub(crate) fn data_slot(&self, i: usize) -> NonNull<u8> {
        debug_assert!(i < ENTRIES);
        data_slot_of(self.entry(i), i)
    }

    /// Bytes of address space a table reserves (code, records, data
    /// slots): none for a unit of the table compiled into the image.
    pub(crate) const fn reserved_bytes() -> usize {
        if arch::BUILTIN_UNITS != 0 {
            0
        } else {
            CODE_SIZE + 2 * TABLE_SIZE
        }
    }
}

/// Maps the page at `offset` of `mapping`'s code part read+exec from the
/// binary's file, and checks that it holds the table's code.
fn map_from_image(mapping: &Mapping, offset: usize) -> Result<()> {
    let source = super::source().map_err(|reason| Error::StrategyUnavailable {
        strategy: Strategy::StaticTrampolines,
        reason: reason.to_owned(),
    })?;
    let image = source
        .image
        .as_ref()
        .expect("a mapped table's source is a file");
    let at = mapping.at(offset);
    // SAFETY: a page of the code part of our mapping, inaccessible until
    // now (a kind's page is made once): nothing uses it.
    unsafe { image.map_exec_over(at, TABLE_SIZE, offset) }
        .map_err(|e| Error::os("mmap(PROT_READ|PROT_EXEC) of the trampoline table", e))?;
    // SAFETY: the page is now a readable mapping of TABLE_SIZE bytes.
    let mapped = unsafe { std::slice::from_raw_parts(at.as_ptr(), TABLE_SIZE) };
    if mapped != &source.table[offset..][..TABLE_SIZE] {
        // SAFETY: the page just mapped, whose entries nobody was given.
        // If this fails the page stays mapped but unreachable: no pointer
        // into it is ever handed out (its kind's bit stays clear).
        let _ = unsafe { mapping.protect(offset, TABLE_SIZE, Prot::None) };
        return Err(Error::StrategyUnavailable {
            strategy: Strategy::StaticTrampolines,
            reason: format!(
                "{} no longer holds this process's trampoline table (replaced since it was \
                 loaded?)",
                image.path()
            ),
        });
    }
    Ok(())
}

/// Copies the table's page at `offset` from this library's text into
/// `mapping`'s code part and seals it read+exec: written while read-write
/// only, executable only once no longer writable.
fn seal_copy(mapping: &Mapping, offset: usize) -> Result<()> {
    let table = arch::trampoline_table().expect("sealed only where a table is assembled");
    let at = mapping.at(offset);
    // SAFETY: a page of the code part of our mapping, inaccessible until
    // now (a kind's page is made once): nothing uses it or runs it.
    unsafe { mapping.protect(offset, TABLE_SIZE, Prot::ReadWrite) }
        .map_err(|e| Error::os("mprotect(PROT_READ|PROT_WRITE) of a trampoline page", e))?;
    // SAFETY: the page is ours and read-write now; the source is the
    // table's text, which never overlaps a mapping of ours.
    unsafe {
        std::ptr::copy_nonoverlapping(table[offset..].as_ptr(), at.as_ptr(), TABLE_SIZE);
    }
    // Every entry of the table starts with a landing pad, as where it is
    // mapped from the file.
    // SAFETY: the page just written, whose entries nobody was given.
    if let Err(e) = unsafe { mapping.protect(offset, TABLE_SIZE, Prot::ReadExecGuarded) } {
        // SAFETY: as above; left inaccessible, its kind's bit stays clear.
        let _ = unsafe { mapping.protect(offset, TABLE_SIZE, Prot::None) };
        return Err(Error::os(
            "mprotect(PROT_READ|PROT_EXEC) of a trampoline page",
            e,
        ));
    }
    crate::sys::flush_icache(at.as_ptr(), TABLE_SIZE);
    Ok(())
}
