//! The units of a trampoline table compiled into the image with its
//! records (`arch::BUILTIN_UNITS` of them; Windows, where making code at
//! run time may be forbidden): a fixed set, shared by every heap of the
//! process, each taken by one [`Table`](super::Table) at a time.

// Where the table is mapped again instead (ELF), `BUILTIN_UNITS` is zero
// and no unit is ever taken: the comparisons below are then constant.
#![allow(clippy::absurd_extreme_comparisons)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::TABLE_SIZE;
use crate::arch;
use crate::error::{Error, Result};

const _: () = assert!(arch::BUILTIN_UNITS <= 64, "a bit per unit in `TAKEN`");

/// A bit per unit: set while a table holds it.
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// One unit of the built-in table, held until dropped.
#[derive(Debug)]
pub(super) struct Unit(usize);

impl Unit {
    /// Takes a free unit.
    ///
    /// # Errors
    ///
    /// [`Error::TrampolinesExhausted`] when every unit is held.
    pub(super) fn take() -> Result<Unit> {
        let mut taken = TAKEN.load(Ordering::Relaxed);
        loop {
            let free = (!taken).trailing_zeros() as usize;
            if free >= arch::BUILTIN_UNITS {
                return Err(Error::TrampolinesExhausted {
                    capacity: arch::BUILTIN_UNITS * super::ENTRIES,
                });
            }
            match TAKEN.compare_exchange_weak(
                taken,
                taken | 1 << free,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Unit(free)),
                Err(now) => taken = now,
            }
        }
    }

    /// The address of the unit's first entry in the page of kind 0.
    pub(super) fn base(&self) -> usize {
        let table = arch::trampoline_table().expect("a built-in table is assembled");
        table.as_ptr() as usize + self.0 * TABLE_SIZE
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        // Release: the next holder sees every record this one retired.
        TAKEN.fetch_and(!(1 << self.0), Ordering::Release);
    }
}
