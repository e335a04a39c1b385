//! Static trampolines: thunks that are data, not code.
//!
//! The trampoline table is a few pages of entries assembled into this
//! library's own text, one "page" per kind of context placement: a unit of
//! [`TABLE_SIZE`] bytes, whole pages (16 KiB on x86_64, 64 KiB on AArch64;
//! the per-ISA assembly is in `arch`, e.g. `arch/x86_64/trampolines.rs`).
//! At run time it is mapped again, read+exec, from the file the process
//! loaded it from (found by `sys::ImageFile`), next to a read-write unit of
//! records and one of data slots:
//!
//! ```text
//!  base        + TABLE_SIZE          + CODE_SIZE          + CODE_SIZE + TABLE_SIZE
//!  | kind 0 page | kind 1 page | ... | record 0 | record 1 | ... | data 0 | data 1 | ... |
//!  '------ read+exec, from the binary's file ------'---- read-write, anonymous, private ----'
//! ```
//!
//! Slot `i` of a table is entry `i` of every page and record `i`: entry
//! `i` of each page reads record `i`, at a fixed distance from itself. A
//! thunk's function pointer is entry `i` of the page of its signature's
//! placement ([`entry_offset`]). A record is `[ctx, entry, stack_args,
//! target]`: a register page's entry loads `target` (the closure's entry
//! function), puts `ctx` in the placement's register and jumps once; the
//! frame page's entry jumps to `target`, a frame adapter (in `arch`) that
//! builds a new frame from the record. Creating a thunk writes a record,
//! never code: no page is ever writable and executable, no page gains exec
//! after it was written, and no memfd is needed. A small `Fn` closure lives
//! in its slot's 32-byte data slot (`crate::data_slot`), so such a thunk
//! allocates nothing else.
//!
//! This module owns the feature:
//! - `source.rs`: where the table's code comes from (found once per
//!   process), and the check that the file still holds it;
//! - `table.rs`: one mapped table with its records (publish, retire);
//! - `pool.rs`: the tables of one heap, and their free entries (a stack per
//!   table, outside the tables), kept under the heap's lock;
//! - [`record`] and [`self_test`] below: what a thunk's record holds, and the
//!   probe's end-to-end check.
//!
//! The heap's side (locking, accounting, the slot handle a thunk owns) is
//! `heap/trampoline_slot.rs`; a thunk's side is `Code::Static` in `thunk`.
//!
//! A protect heap's thunks use the same tables with their pages of code
//! copied from the text into private pages and sealed read+exec with
//! `mprotect` ([`TableCode::Sealed`]): one system call per page of a kind,
//! that is per [`ENTRIES`] thunks, where a generated thunk needed a page
//! and a system call of its own (`mprotect` cannot seal a few bytes of a
//! page while other thunks run from the rest).

mod builtin;
mod pool;
mod source;
mod table;

pub(crate) use pool::{SlotRef, TablePool};
pub(crate) use source::{TableSource, source};
pub(crate) use table::{MappedPage, Table, divert_at, publish_at, retire_at};

use crate::abi::CallConv;
use crate::abi::conv::C_CONV;
use crate::arch::{self, Placement};

/// Where a table's pages of code come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableCode {
    /// Mapped read+exec from the binary's file ([`TableSource`]): no page
    /// is ever made executable at run time (static trampolines).
    Image,
    /// Copied from this library's text into private read-write pages,
    /// then sealed read+exec with `mprotect` (a protect heap's thunks).
    Sealed,
}

impl TableCode {
    /// Whether this build can seal copies of its table: it has one, whose
    /// units are whole pages, and not one compiled into the image with its
    /// records (PE/COFF, whose entries reach their records through the
    /// linker: a copy would not).
    pub(crate) fn can_seal() -> bool {
        arch::BUILTIN_UNITS == 0
            && arch::trampoline_table().is_some()
            && TABLE_SIZE % crate::sys::page_size() == 0
    }
}

/// The size of one page of a table's code (and of its record page, and of
/// its data page).
pub(crate) const TABLE_SIZE: usize = arch::TABLE_SIZE;
/// The size of a table's code: one page per kind of placement.
pub(crate) const CODE_SIZE: usize = arch::TABLE_KINDS * TABLE_SIZE;
/// The size of one entry, and of one record.
pub(crate) const ENTRY_SIZE: usize = arch::ENTRY_SIZE;
/// Slots (and so thunks) per table.
pub(crate) const ENTRIES: usize = TABLE_SIZE / ENTRY_SIZE;
/// The distance between a slot's entries of two kinds next to each other,
/// and from its records to its data slots: one page where each table is
/// mapped (its kinds' pages side by side, then records, then data), the
/// whole run of units where the table is compiled into the image
/// (kind-major: every unit of a kind, then the next kind; every unit's
/// records, then every unit's data slots).
pub(crate) const KIND_STRIDE: usize = if arch::BUILTIN_UNITS == 0 {
    TABLE_SIZE
} else {
    arch::BUILTIN_UNITS * TABLE_SIZE
};

/// How far a slot's record is from its entry in the page of kind 0:
/// `CODE_SIZE` where each table is mapped (its records follow its code),
/// or as the linker placed the records section where the table is compiled
/// into the image.
#[inline(always)]
pub(crate) fn record_distance() -> usize {
    match (arch::trampoline_records(), arch::trampoline_table()) {
        (Some(records), Some(table)) => records.wrapping_sub(table.as_ptr() as usize),
        _ => CODE_SIZE,
    }
}

/// The kind of a placement: which page of a table serves it.
#[inline(always)]
pub(crate) const fn kind_of(placement: Placement) -> usize {
    arch::trampoline_kind(placement)
}

/// How far a thunk's function pointer is from its slot's entry in the
/// first page: the page of `placement`'s kind.
#[inline(always)]
pub(crate) const fn entry_offset(placement: Placement) -> usize {
    kind_of(placement) * KIND_STRIDE
}

/// What a thunk's record holds: the words `[ctx, entry, stack_args]` and
/// the `target` its entry jumps to (the entry function, or the frame
/// adapter for a context that goes on the stack).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    pub(crate) words: [usize; 3],
    pub(crate) target: usize,
}

/// The record of a thunk whose closure context is `ctx` and entry function
/// `entry`.
#[inline]
pub(crate) fn record(conv: CallConv, placement: Placement, ctx: usize, entry: usize) -> Record {
    let stack_args = match placement {
        Placement::Stack(n) => n,
        Placement::Register(_) | Placement::Float(_) => 0,
    };
    Record {
        words: [ctx, entry, stack_args],
        target: arch::trampoline_target(conv, placement, entry),
    }
}

/// Maps a trampoline table and calls, through entry 0, a function that
/// sets a flag, the way a register-path thunk would: whether static
/// trampolines work in this process (the probe's check).
///
/// # Errors
///
/// Why they do not.
pub(crate) fn self_test() -> std::result::Result<(), String> {
    use std::sync::atomic::{AtomicBool, Ordering};

    extern "C" fn reached(flag: *const AtomicBool) {
        // SAFETY: the record's context is the `AtomicBool` below, alive for
        // the call.
        unsafe { &*flag }.store(true, Ordering::Relaxed);
    }

    source().map_err(str::to_owned)?;
    let placement =
        arch::placement(C_CONV, &[]).ok_or("no thunk calling scheme for this architecture")?;
    let table = Table::map().map_err(|e| e.with_causes())?;
    table
        .map_kind(TableCode::Image, kind_of(placement))
        .map_err(|e| e.with_causes())?
        .note();
    let flag = AtomicBool::new(false);
    let rec = record(
        C_CONV,
        placement,
        std::ptr::from_ref(&flag) as usize,
        reached as *const () as usize,
    );
    table.publish(0, rec);
    // SAFETY: entry 0 of the page of the placement loads record 0, puts
    // the flag's address where the placement says and jumps to `reached`,
    // which takes it as its (only) argument: together an `extern "C" fn()`.
    let f: extern "C" fn() = unsafe {
        std::mem::transmute::<usize, extern "C" fn()>(table.entry(0) + entry_offset(placement))
    };
    f();
    if flag.load(Ordering::Relaxed) {
        Ok(())
    } else {
        Err("a call through the trampoline table did not arrive".into())
    }
}
