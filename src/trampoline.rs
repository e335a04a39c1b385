//! Static trampolines: the trampoline table assembled into this library's
//! text (see `arch`), mapped again at run time from the file it was loaded
//! from, next to a read-write page of records.
//!
//! ```text
//!  base                      base + TABLE_SIZE             base + 2*TABLE_SIZE
//!  | entry 0 | entry 1 | ... | record 0 | record 1 | ... |
//!  '-- read+exec, from the binary's file --'-- read-write, anonymous ---'
//! ```
//!
//! Entry `i` reads record `i` at exactly `TABLE_SIZE` bytes ahead of
//! itself. No page is ever writable and executable, no page gains exec
//! after it was written, and no memfd is needed: the code comes from the
//! same file the process already runs.

use once_cell::race::OnceBox;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::arch;
use crate::error::{Error, Result};
use crate::strategy::Strategy;
use crate::sys::{self, ImageFile, Prot};

/// The size of a table (and of its record page).
pub(crate) const TABLE_SIZE: usize = arch::TABLE_SIZE;
/// Entries (and so thunks) per table.
pub(crate) const ENTRIES: usize = arch::TABLE_SIZE / arch::ENTRY_SIZE;
/// Words per record: `[ctx, entry, stack_args, target]`.
const RECORD_WORDS: usize = arch::ENTRY_SIZE / std::mem::size_of::<usize>();
const TARGET: usize = 3;

/// Where the table's code comes from: the file, found once per process and
/// kept open (one file descriptor, close-on-exec) so that each new table
/// maps it without searching again.
#[derive(Debug)]
pub(crate) struct TableSource {
    image: ImageFile,
    table: &'static [u8],
}

impl TableSource {
    /// The file, its offset, and how it was found, for the probe.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} at offset {:#x} (found with {})",
            self.image.path(),
            self.image.offset(),
            self.image.found_by()
        )
    }
}

/// The table's source, looked up on first use.
///
/// # Errors
///
/// Why static trampolines cannot work in this process.
pub(crate) fn source() -> std::result::Result<&'static TableSource, &'static str> {
    // Compare-and-swap, not a `Once`: fork-safe (see `heap/fork.rs`); racing
    // first uses may each look, one answer is kept.
    static SOURCE: OnceBox<std::result::Result<TableSource, String>> = OnceBox::new();
    SOURCE
        .get_or_init(|| Box::new(find_source()))
        .as_ref()
        .map_err(String::as_str)
}

fn find_source() -> std::result::Result<TableSource, String> {
    let table =
        arch::trampoline_table().ok_or("no trampoline table is assembled for this architecture")?;
    let page = sys::page_size();
    if page > TABLE_SIZE {
        return Err(format!(
            "the page size ({page}) is larger than the trampoline table ({TABLE_SIZE})"
        ));
    }
    let image = ImageFile::locate(table.as_ptr() as usize)?;
    if image.offset() % TABLE_SIZE as u64 != 0 {
        return Err(format!(
            "the trampoline table is at offset {:#x} of {}, not on a page boundary",
            image.offset(),
            image.path()
        ));
    }
    Ok(TableSource { image, table })
}

/// One mapped table and its record page.
#[derive(Debug)]
pub(crate) struct Table {
    base: NonNull<u8>,
}

// SAFETY: a table owns its mappings; records are written through atomics
// or by the one owner of a slot, under the heap's lock.
unsafe impl Send for Table {}

impl Table {
    /// Maps a table from `source`, with every record pointing to the trap
    /// target.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if a mapping fails; [`Error::StrategyUnavailable`] if
    /// the file no longer holds the table's code.
    pub(crate) fn map(source: &TableSource) -> Result<Table> {
        let base = sys::map_anon(2 * TABLE_SIZE, Prot::ReadWrite)
            .map_err(|e| Error::os("mmap (trampoline table)", e))?;
        let table = Table { base };
        // SAFETY: the first half of our fresh reservation; nothing uses it.
        unsafe { source.image.map_exec_over(base, TABLE_SIZE) }
            .map_err(|e| Error::os("mmap(PROT_READ|PROT_EXEC) of the trampoline table", e))?;
        // SAFETY: the first half is now a readable mapping of TABLE_SIZE
        // bytes.
        let mapped = unsafe { std::slice::from_raw_parts(base.as_ptr(), TABLE_SIZE) };
        if mapped != source.table {
            return Err(Error::StrategyUnavailable {
                strategy: Strategy::StaticTrampolines,
                reason: format!(
                    "{} no longer holds this process's trampoline table (replaced since it was \
                     loaded?)",
                    source.image.path()
                ),
            });
        }
        for i in 0..ENTRIES {
            table
                .target(i)
                .store(arch::trampoline_freed(), Ordering::Relaxed);
        }
        Ok(table)
    }

    /// The address of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> usize {
        debug_assert!(i < ENTRIES);
        self.base.as_ptr() as usize + i * arch::ENTRY_SIZE
    }

    fn record(&self, i: usize) -> *mut usize {
        debug_assert!(i < ENTRIES);
        // SAFETY: record `i` is inside the record page (i < ENTRIES).
        unsafe {
            self.base
                .as_ptr()
                .add(TABLE_SIZE + i * arch::ENTRY_SIZE)
                .cast()
        }
    }

    fn target(&self, i: usize) -> &AtomicUsize {
        // SAFETY: the target word is an aligned `usize` in the record page,
        // which lives as long as `self`; it is only accessed atomically
        // (here and by the trampoline's load, which x86_64 and AArch64 make
        // single-copy atomic for an aligned word).
        unsafe { AtomicUsize::from_ptr(self.record(i).add(TARGET)) }
    }

    /// Fills record `i` (`[ctx, entry, stack_args]` and the target), the
    /// target last with release ordering: a thread that reaches the entry
    /// through the thunk's published pointer sees the whole record.
    ///
    /// Only the owner of slot `i` may call this.
    pub(crate) fn publish(&self, i: usize, words: [usize; 3], target: usize) {
        let record = self.record(i);
        for (w, value) in words.into_iter().enumerate() {
            // SAFETY: inside record `i`, which only its owner writes; the
            // trampoline does not read these words while the target is the
            // trap (set when the slot was freed).
            unsafe { record.add(w).write(value) };
        }
        const { assert!(RECORD_WORDS == 4) };
        self.target(i).store(target, Ordering::Release);
    }

    /// Points record `i` at the trap target: a stale call through the entry
    /// stops at once.
    pub(crate) fn retire(&self, i: usize) {
        self.target(i)
            .store(arch::trampoline_freed(), Ordering::Release);
    }

    /// Bytes of address space a table takes (code and records).
    pub(crate) const fn reserved_bytes() -> usize {
        2 * TABLE_SIZE
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: the heap drops a table only when none of its entries is
        // live (or the heap itself is gone, and with it every thunk).
        let r = unsafe { sys::unmap(self.base, 2 * TABLE_SIZE) };
        debug_assert!(r.is_ok(), "munmap: {r:?}");
    }
}
