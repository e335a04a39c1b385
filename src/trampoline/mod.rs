//! Static trampolines: thunks that are data, not code.
//!
//! The trampoline table is a page of identical entries assembled into this
//! library's own text (the per-ISA assembly is in `arch`, e.g.
//! `arch/x86_64/trampolines.rs`). At run time it is mapped again, read+exec,
//! from the file the process loaded it from (found by `sys::ImageFile`),
//! next to a read-write page of records and one of data slots:
//!
//! ```text
//!  base                      base + TABLE_SIZE         base + 2*TABLE_SIZE
//!  | entry 0 | entry 1 | ... | record 0 | record 1 | ... | data 0 | data 1 | ... |
//!  '-- read+exec, from the binary's file --'---- read-write, anonymous, private ----'
//! ```
//!
//! Entry `i` reads record `i` at exactly `TABLE_SIZE` bytes ahead of
//! itself. A record is `[ctx, entry, stack_args, target]`: `target` is an
//! adapter (in `arch`) that puts `ctx` where the signature's placement says
//! and reaches `entry`, the closure's entry function. Creating a thunk
//! writes a record, never code: no page is ever writable and executable, no
//! page gains exec after it was written, and no memfd is needed. A small
//! `Fn` closure lives in its entry's 16-byte data slot
//! (`crate::data_slot`), so such a thunk allocates nothing else.
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

mod pool;
mod source;
mod table;

pub(crate) use pool::{SlotRef, TablePool};
pub(crate) use source::{TableSource, source};
pub(crate) use table::{Table, publish_at, retire_at};

use crate::abi::CallConv;
use crate::abi::conv::C_CONV;
use crate::arch::{self, Placement};

/// The size of a table (and of its record page, and of its data page).
pub(crate) const TABLE_SIZE: usize = arch::TABLE_SIZE;
/// The size of one entry, and of one record.
pub(crate) const ENTRY_SIZE: usize = arch::ENTRY_SIZE;
/// Entries (and so thunks) per table.
pub(crate) const ENTRIES: usize = TABLE_SIZE / ENTRY_SIZE;

/// What a thunk's record holds: the words `[ctx, entry, stack_args]` and
/// the adapter `target` for a context placed at `placement` under `conv`.
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
        target: arch::trampoline_target(conv, placement),
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

    let source = source().map_err(str::to_owned)?;
    let placement =
        arch::placement(C_CONV, &[]).ok_or("no thunk calling scheme for this architecture")?;
    let table = Table::map(source).map_err(|e| e.with_causes())?;
    let flag = AtomicBool::new(false);
    let rec = record(
        C_CONV,
        placement,
        std::ptr::from_ref(&flag) as usize,
        reached as *const () as usize,
    );
    table.publish(0, rec);
    // SAFETY: entry 0 of a mapped table jumps through record 0 to the
    // register adapter, which passes the flag's address to `reached` as its
    // (only) argument: together an `extern "C" fn()`.
    let f: extern "C" fn() =
        unsafe { std::mem::transmute::<usize, extern "C" fn()>(table.entry(0)) };
    f();
    if flag.load(Ordering::Relaxed) {
        Ok(())
    } else {
        Err("a call through the trampoline table did not arrive".into())
    }
}
