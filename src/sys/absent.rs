//! What a platform without a given facility has in its place: the types
//! only a working constructor could make (`CodeDir`, `CodeFile`,
//! `ImageFile`) are uninhabited, so their methods need no body (memmap2's
//! stub style); the private-file functions fail; the Linux-only probe
//! facts (MDWE, the memfd sysctl, SELinux, seccomp, PaX) are unknown.
//! Shared by `unsupported.rs` (everything absent) and the platforms that
//! have some of these and not others (Windows: its `CodeFile` is a
//! section, and it has no directories for code, no image file to map
//! again, none of Linux's probe facts).

use std::io;
use std::ptr::NonNull;

use crate::sys::{Mapping, Prot};

/// No value: the types below hold one, so they cannot exist.
#[derive(Debug)]
enum Void {}

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not available on this platform")
}

/// No private files here (perf's map is Linux's).
pub(crate) fn open_private_file(_path: &std::path::Path) -> io::Result<std::fs::File> {
    Err(unsupported())
}

/// No private files here.
pub(crate) fn read_private_file(_file: &std::fs::File) -> io::Result<Vec<u8>> {
    Err(unsupported())
}

/// Cannot exist here: [`open`](CodeDir::open) always fails.
#[derive(Debug)]
pub(crate) struct CodeDir(Void);

impl CodeDir {
    /// None: no file here can hold code.
    pub(crate) fn candidates() -> Vec<(std::path::PathBuf, &'static str)> {
        Vec::new()
    }

    /// Always fails.
    pub(crate) fn open(
        path: &std::path::Path,
        _chosen_by: &'static str,
    ) -> Result<CodeDir, String> {
        Err(format!(
            "{}: not supported on this platform",
            path.display()
        ))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        match self.0 {}
    }

    pub(crate) fn chosen_by(&self) -> &'static str {
        match self.0 {}
    }

    pub(crate) fn unnamed_files(&self) -> bool {
        match self.0 {}
    }

    /// Never returns: no `CodeDir` exists.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn never<T>(&self) -> T {
        match self.0 {}
    }
}

/// Cannot exist here: [`create`](CodeFile::create) always fails.
#[derive(Debug)]
#[cfg_attr(windows, allow(dead_code))]
pub(crate) struct CodeFile(Void);

#[cfg_attr(windows, allow(dead_code))]
impl CodeFile {
    /// Always fails with `Unsupported`.
    pub(crate) fn create(_len: usize) -> io::Result<Self> {
        Err(unsupported())
    }

    /// Never callable: no `CodeDir` exists.
    pub(crate) fn create_in(dir: &std::sync::Arc<CodeDir>, _len: usize) -> io::Result<Self> {
        match dir.0 {}
    }

    pub(crate) fn create_like(&self, _len: usize) -> io::Result<Self> {
        match self.0 {}
    }

    pub(crate) fn dir(&self) -> Option<&CodeDir> {
        match self.0 {}
    }

    pub(crate) fn noexec_sealed(&self) -> Option<bool> {
        match self.0 {}
    }

    pub(crate) fn map(&self, _len: usize, _prot: Prot) -> io::Result<Mapping> {
        match self.0 {}
    }

    pub(crate) fn reserve_exec_view(&self, _len: usize, _hint: usize) -> io::Result<Mapping> {
        match self.0 {}
    }

    /// # Safety
    /// Never callable: no `CodeFile` exists.
    pub(crate) unsafe fn map_over(
        &self,
        _at: NonNull<u8>,
        _offset: usize,
        _len: usize,
        _prot: Prot,
    ) -> io::Result<()> {
        match self.0 {}
    }

    pub(crate) fn reserve(&self, _offset: usize, _len: usize) -> io::Result<()> {
        match self.0 {}
    }

    pub(crate) fn punch_hole(&self, _offset: usize, _len: usize) -> io::Result<()> {
        match self.0 {}
    }

    pub(crate) fn write_at(&self, _offset: usize, _bytes: &[u8]) -> io::Result<()> {
        match self.0 {}
    }
}

/// Cannot exist here: [`locate`](ImageFile::locate) always fails, so the
/// static trampoline table cannot be mapped again.
#[derive(Debug)]
pub(crate) struct ImageFile(Void);

impl ImageFile {
    /// Always fails: no way to find this process's own files here.
    pub(crate) fn locate(_addr: usize) -> Result<ImageFile, String> {
        Err("finding this process's own files is not implemented on this platform".into())
    }

    pub(crate) fn path(&self) -> &str {
        match self.0 {}
    }

    pub(crate) fn found_by(&self) -> &'static str {
        match self.0 {}
    }

    pub(crate) fn offset(&self) -> u64 {
        match self.0 {}
    }

    /// # Safety
    /// Never callable: no `ImageFile` exists.
    pub(crate) unsafe fn map_exec_over(
        &self,
        _at: NonNull<u8>,
        _len: usize,
        _skip: usize,
    ) -> io::Result<()> {
        match self.0 {}
    }
}

/// No MDWE outside Linux.
pub(crate) fn mdwe_flags() -> io::Result<Option<u32>> {
    Ok(None)
}

/// Unknown here.
pub(crate) fn memfd_noexec_sysctl() -> Option<u8> {
    None
}

/// Unknown here.
pub(crate) fn selinux() -> Option<(bool, Option<bool>)> {
    None
}

/// Unknown here.
pub(crate) fn seccomp() -> Option<(u8, Option<u32>)> {
    None
}

/// Unknown here.
pub(crate) fn pax_flags() -> Option<String> {
    None
}
