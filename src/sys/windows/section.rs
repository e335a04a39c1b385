//! [`CodeFile`] on Windows: a pagefile-backed section, the backing of dual
//! mapping. Its views are each either writable (`FILE_MAP_WRITE`) or
//! executable (`FILE_MAP_READ | FILE_MAP_EXECUTE`), never both; a view's
//! access also caps every later protection change of its pages, so the
//! writable view can never be made executable (the section object itself
//! allows both, as it must for two such views to exist).
//!
//! Windows cannot map a view over part of an existing reservation without
//! placeholders (`MEM_RESERVE_PLACEHOLDER`, which Wine lacks), so Linux's
//! "map the file's page over the reservation" becomes: the executable view
//! of the whole section is mapped once ([`CodeFile::reserve_exec_view`])
//! and kept inaccessible (`PAGE_NOACCESS`), and [`CodeFile::map_over`]
//! opens pages of it (`PAGE_EXECUTE_READ`) when code is first written on
//! them. The section is `SEC_COMMIT`: its whole size is charged to the
//! system's commit limit when it is made (an exhausted commit charge is an
//! error then, not a fault later), while memory is used only by the pages
//! written.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP, FILE_MAP_EXECUTE, FILE_MAP_READ, FILE_MAP_TARGETS_INVALID,
    FILE_MAP_WRITE, MapViewOfFileEx, PAGE_EXECUTE_READWRITE, SEC_COMMIT,
};

use super::absent::CodeDir;
use super::cfg;
use super::{last_error, near_hint, refuse_simulated_acg, system_info};
use crate::sys::{Mapping, Prot};

/// A pagefile-backed section that holds code and is mapped twice: the
/// backing of [`CodeStrategy::DualMap`](crate::strategy::CodeStrategy) on
/// Windows (no named file: Windows has no `DualMapFile`).
#[derive(Debug)]
pub(crate) struct CodeFile {
    section: OwnedHandle,
    len: usize,
    /// Where [`reserve_exec_view`](Self::reserve_exec_view) mapped the
    /// executable view (0: not yet); [`map_over`](Self::map_over) opens
    /// pages there only.
    exec_view: AtomicUsize,
}

impl CodeFile {
    /// Creates a section of `len` bytes, all zero.
    ///
    /// # Errors
    ///
    /// `ERROR_COMMITMENT_LIMIT` (1455, named as such) where the system's
    /// commit charge cannot take `len` more bytes, or another error of
    /// `CreateFileMappingW`.
    pub(crate) fn create(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty section",
            ));
        }
        let size = len as u64;
        // SAFETY: a section backed by the paging file (no file handle), with
        // no name and default security; the arguments are plain values.
        let handle = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_EXECUTE_READWRITE | SEC_COMMIT,
                (size >> 32) as u32,
                size as u32,
                std::ptr::null(),
            )
        };
        if handle.is_null() {
            let e = last_error();
            return Err(io::Error::new(
                e.kind(),
                format!("a section of {len} bytes: {e}"),
            ));
        }
        // SAFETY: a handle just returned to us, owned by no one else.
        let section = unsafe { OwnedHandle::from_raw_handle(handle) };
        Ok(CodeFile {
            section,
            len,
            exec_view: AtomicUsize::new(0),
        })
    }

    /// Never callable: Windows has no code directory.
    pub(crate) fn create_in(dir: &Arc<CodeDir>, _len: usize) -> io::Result<Self> {
        dir.never()
    }

    /// A new section of `len` bytes (the only kind there is here).
    pub(crate) fn create_like(&self, len: usize) -> io::Result<Self> {
        Self::create(len)
    }

    /// None: a section is in no directory.
    pub(crate) fn dir(&self) -> Option<&CodeDir> {
        None
    }

    /// Not a question here: `MFD_NOEXEC_SEAL` is Linux's (a section cannot
    /// be run as a program anyway).
    pub(crate) fn noexec_sealed(&self) -> Option<bool> {
        None
    }

    /// Maps `len` bytes of the section from offset 0, writable or
    /// executable as `prot` says, at an address the system chooses.
    pub(crate) fn map(&self, len: usize, prot: Prot) -> io::Result<Mapping> {
        self.map_near(len, prot, 0)
    }

    /// As [`map`](Self::map), asking for address `hint` (rounded down to
    /// the allocation granularity) if that range is free.
    pub(crate) fn map_near(&self, len: usize, prot: Prot, hint: usize) -> io::Result<Mapping> {
        let ptr = self.view(0, len, access(prot)?, hint)?;
        // SAFETY: a view of `len` bytes just mapped, by us, for us.
        let mapping = unsafe { Mapping::from_raw(ptr, len) };
        if prot == Prot::None {
            // SAFETY: our own view, which nothing uses yet.
            unsafe { super::protect(ptr, len, Prot::None) }?;
        }
        Ok(mapping)
    }

    /// The range where this section's code runs: a read+exec view of
    /// `len` bytes from offset 0 whose pages are all inaccessible until
    /// [`map_over`](Self::map_over) opens them. One per section. Where
    /// Control Flow Guard targets are registered (`cfg.rs`) no address of
    /// it is a valid target until registered (or until a page is opened
    /// unguarded, which makes all of its addresses valid).
    pub(crate) fn reserve_exec_view(&self, len: usize, hint: usize) -> io::Result<Mapping> {
        let targets_invalid = if cfg::for_real() {
            FILE_MAP_TARGETS_INVALID
        } else {
            0
        };
        let ptr = self.view(0, len, access(Prot::None)? | targets_invalid, hint)?;
        // SAFETY: a view of `len` bytes just mapped, by us, for us.
        let view = unsafe { Mapping::from_raw(ptr, len) };
        // SAFETY: our own view, which nothing uses yet.
        unsafe { super::protect(ptr, len, Prot::None) }?;
        let base = ptr.as_ptr() as usize;
        if self
            .exec_view
            .compare_exchange(0, base, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(io::Error::other("a section has one executable view"));
        }
        if cfg::enabled() {
            exec_views().push(ExecView {
                base,
                len,
                section: self.section.as_raw_handle() as usize,
            });
        }
        Ok(view)
    }

    /// Opens `len` bytes from `offset` (a multiple of the page size) of the
    /// executable view at `at` with `prot`: what mapping the file's pages
    /// over a reservation is on Linux. `at` must be where that view has
    /// `offset`; anything else is `Unsupported` (no placeholders to map
    /// over).
    ///
    /// # Safety
    /// - `at..at+len` is a range of whole pages of the view made by
    ///   [`reserve_exec_view`](Self::reserve_exec_view), owned by the caller;
    /// - nothing relies on the old access of that range.
    pub(crate) unsafe fn map_over(
        &self,
        at: NonNull<u8>,
        offset: usize,
        len: usize,
        prot: Prot,
    ) -> io::Result<()> {
        let base = self.exec_view.load(Ordering::Acquire);
        let fits = offset.checked_add(len).is_some_and(|end| end <= self.len);
        if base == 0 || (at.as_ptr() as usize).wrapping_sub(base) != offset || !fits {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "on Windows a section's pages are opened only in its own executable view \
                 (no placeholder to map a view over)",
            ));
        }
        // SAFETY: whole pages of our executable view (checked above), which
        // the caller owns and whose old access nothing relies on.
        unsafe { super::protect(at, len, prot) }
    }

    /// Nothing to do: the whole section was charged to the commit limit
    /// when it was made ([`create`](Self::create)).
    pub(crate) fn reserve(&self, _offset: usize, _len: usize) -> io::Result<()> {
        Ok(())
    }

    /// `Unsupported`: pages of a section cannot be decommitted while it
    /// lives, so a dual-mapped region keeps the memory of pages it has
    /// written until it is freed.
    pub(crate) fn punch_hole(&self, _offset: usize, _len: usize) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a section's pages cannot be decommitted",
        ))
    }

    /// Writes all of `bytes` at `offset` of the section through a writable
    /// view of the pages it covers, unmapped again before this returns
    /// (Windows has no `pwrite` for sections).
    pub(crate) fn write_at(&self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(bytes.len())
            .filter(|&end| end <= self.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "past the section's end"))?;
        let start = offset & !(system_info().1 - 1);
        let ptr = self.view(start, end - start, FILE_MAP_WRITE, 0)?;
        // SAFETY: a writable view of `end - start` bytes, just mapped.
        let view = unsafe { Mapping::from_raw(ptr, end - start) };
        // SAFETY: `offset - start + bytes.len() == end - start`: inside the
        // view, which nothing else references.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                view.as_ptr().add(offset - start),
                bytes.len(),
            )
        };
        drop(view);
        Ok(())
    }

    /// Maps `len` bytes from `offset` (a multiple of the allocation
    /// granularity) with `access`, at `hint` if free.
    fn view(
        &self,
        offset: usize,
        len: usize,
        access: FILE_MAP,
        hint: usize,
    ) -> io::Result<NonNull<u8>> {
        let offset = offset as u64;
        near_hint(hint, |at| {
            // SAFETY: a new view of our own section; with a base address,
            // the call fails where that range is in use (nothing is
            // replaced).
            unsafe {
                MapViewOfFileEx(
                    self.section.as_raw_handle(),
                    access,
                    (offset >> 32) as u32,
                    offset as u32,
                    len,
                    at as *const std::ffi::c_void,
                )
            }
            .Value
        })
    }
}

impl Drop for CodeFile {
    fn drop(&mut self) {
        let base = self.exec_view.load(Ordering::Acquire);
        if base != 0 && cfg::enabled() {
            exec_views().retain(|v| v.base != base);
        }
    }
}

/// A section's executable view, where call targets are registered: what
/// registering a target in it needs (`cfg.rs`).
struct ExecView {
    base: usize,
    len: usize,
    /// The section's handle, open while the entry is here.
    section: usize,
}

/// The executable views of live sections (kept only where call targets
/// are registered).
fn exec_views() -> std::sync::MutexGuard<'static, Vec<ExecView>> {
    static VIEWS: std::sync::Mutex<Vec<ExecView>> = std::sync::Mutex::new(Vec::new());
    VIEWS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The executable view that holds `addr` (its start and length) and its
/// section, if a live section's.
pub(super) fn exec_view_of(addr: usize) -> Option<(usize, usize, HANDLE)> {
    exec_views()
        .iter()
        .find(|v| (v.base..v.base + v.len).contains(&addr))
        .map(|v| (v.base, v.len, v.section as HANDLE))
}

/// The view access for `prot`: writable or executable, never both.
/// An inaccessible view is an executable one whose pages are all closed
/// (`map_over` opens them), so Arbitrary Code Guard refuses it too.
fn access(prot: Prot) -> io::Result<FILE_MAP> {
    Ok(match prot {
        Prot::ReadWrite => FILE_MAP_WRITE,
        Prot::None | Prot::ReadExec | Prot::ReadExecGuarded => {
            refuse_simulated_acg(Prot::ReadExec)?;
            FILE_MAP_READ | FILE_MAP_EXECUTE
        }
    })
}
