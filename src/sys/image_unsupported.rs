//! Platforms without a way to find this process's own files: the static
//! trampoline table cannot be mapped again.

use std::io;
use std::ptr::NonNull;

/// Never constructed here.
#[derive(Debug)]
pub(crate) struct ImageFile(());

impl ImageFile {
    /// Always fails: no way to find the file here.
    pub(crate) fn locate(_addr: usize) -> Result<ImageFile, String> {
        Err("finding this process's own files is not implemented on this platform".into())
    }

    /// Never called: no `ImageFile` exists.
    pub(crate) fn path(&self) -> &str {
        ""
    }

    /// Never called: no `ImageFile` exists.
    pub(crate) fn found_by(&self) -> &'static str {
        ""
    }

    /// Never called: no `ImageFile` exists.
    pub(crate) fn offset(&self) -> u64 {
        0
    }

    /// Always fails with `Unsupported`.
    ///
    /// # Safety
    /// None needed: nothing is mapped.
    pub(crate) unsafe fn map_exec_over(&self, _at: NonNull<u8>, _len: usize) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}
