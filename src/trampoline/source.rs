//! Where a trampoline table's code is mapped from: the file this library's
//! text was loaded from, found once per process (the look-up itself is
//! `sys::ImageFile`'s), or nowhere, for a table compiled into the image
//! with its records (`arch::BUILTIN_UNITS`).

use once_cell::race::OnceBox;

use super::{KIND_STRIDE, TABLE_SIZE};
use crate::arch;
use crate::sys::{self, ImageFile};

/// Where the table's code comes from: the file, found once per process and
/// kept open (one file descriptor, close-on-exec) so that each new table
/// maps it without searching again.
#[derive(Debug)]
pub(crate) struct TableSource {
    /// The file the table's pages are mapped from; `None` for a table
    /// compiled into the image with its records, which is never mapped.
    pub(super) image: Option<ImageFile>,
    pub(super) table: &'static [u8],
}

impl TableSource {
    /// The file, its offset, and how it was found, for the probe.
    pub(crate) fn describe(&self) -> String {
        match &self.image {
            Some(image) => format!(
                "mapped from {} at offset {:#x} (found with {})",
                image.path(),
                image.offset(),
                image.found_by()
            ),
            None => format!(
                "compiled into this binary with its records ({} thunks for the whole process)",
                arch::BUILTIN_UNITS * super::ENTRIES
            ),
        }
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
    assert_eq!(
        table.len(),
        arch::TABLE_KINDS * KIND_STRIDE,
        "one page (or run of units) per kind of placement"
    );
    if arch::BUILTIN_UNITS != 0 {
        // In the image with its records: nothing to find or map.
        return Ok(TableSource { image: None, table });
    }
    // A unit of the table (one kind's code, the records, the data slots)
    // must be whole pages: the page size is the kernel's, read at run time
    // (AArch64 kernels use 4, 16 or 64 KiB; the unit is 64 KiB there).
    let page = sys::page_size();
    if TABLE_SIZE % page != 0 {
        return Err(format!(
            "the page size ({page}) does not divide a unit of the trampoline table ({TABLE_SIZE})"
        ));
    }
    let image = ImageFile::locate(table.as_ptr() as usize)?;
    // Each unit is mapped from the file at its own offset, which must be
    // on a page boundary.
    if image.offset() % page as u64 != 0 {
        return Err(format!(
            "the trampoline table is at offset {:#x} of {}, not on a page boundary",
            image.offset(),
            image.path()
        ));
    }
    Ok(TableSource {
        image: Some(image),
        table,
    })
}
