//! Platforms without a module of their own: every operation that would need
//! the operating system fails with `Unsupported`, so the crate still builds
//! and says clearly what it cannot do. The files, image and Linux probe
//! facts are `absent.rs`'s, shared with platforms that lack only those.

use std::io;
use std::ptr::NonNull;

use super::{ChildRwx, Mapping, Prot};

#[path = "absent.rs"]
mod absent;

pub(crate) use absent::*;

/// The operating system's name as reported by the probe.
pub(crate) const OS: &str = std::env::consts::OS;

/// What would hold dual-mapped code, for the probe's words (nothing can).
pub(crate) const CODE_FILE_KIND: &str = "memfd";
/// The call that makes one, for the probe's reasons.
pub(crate) const CODE_FILE_CREATE: &str = "memfd_create";

/// Nothing maps here at all.
pub(crate) const MAPS_OVER_ANY_RANGE: bool = false;

/// The mutex [`DefaultLock`](crate::DefaultLock) uses in a child of
/// `fork()` (never, here: there is nothing to fork with).
pub(crate) type RawLock = parking_lot::RawMutex;

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "wxthunk has no platform layer for this OS yet",
    )
}

/// A conventional page size; nothing is ever mapped here.
pub(crate) fn page_size() -> usize {
    4096
}

/// Always fails with `Unsupported`.
pub(in crate::sys) fn map_anon_near(
    _len: usize,
    _prot: Prot,
    _hint: usize,
) -> io::Result<NonNull<u8>> {
    Err(unsupported())
}

/// Always fails with `Unsupported`.
///
/// # Safety
/// None needed: nothing can have been mapped.
pub(in crate::sys) unsafe fn map_anon_over(
    _at: NonNull<u8>,
    _len: usize,
    _prot: Prot,
) -> io::Result<()> {
    Err(unsupported())
}

/// Always fails with `Unsupported`.
///
/// # Safety
/// None needed: nothing can have been mapped.
pub(in crate::sys) unsafe fn unmap(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Err(unsupported())
}

/// Always fails with `Unsupported`.
///
/// # Safety
/// None needed: nothing can have been mapped.
pub(in crate::sys) unsafe fn protect(
    _ptr: NonNull<u8>,
    _len: usize,
    _prot: Prot,
) -> io::Result<()> {
    Err(unsupported())
}

/// Nothing is ever mapped here.
///
/// # Safety
/// None needed.
pub(in crate::sys) unsafe fn discard(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Err(unsupported())
}

/// No thread-exit destructors here (nothing to release: nothing is mapped).
#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
pub(crate) struct ThreadExitKey(usize);

#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
impl ThreadExitKey {
    /// Always fails with `Unsupported`.
    pub(crate) fn new(_dtor: unsafe extern "C" fn(*mut std::ffi::c_void)) -> io::Result<Self> {
        Err(unsupported())
    }

    /// Never called: there is no key.
    pub(crate) fn into_raw(self) -> usize {
        self.0
    }

    /// Never called: there is no key.
    pub(crate) fn from_raw(raw: usize) -> Self {
        ThreadExitKey(raw)
    }

    /// Always fails with `Unsupported`.
    pub(crate) fn set(&self, _value: *mut std::ffi::c_void) -> io::Result<()> {
        Err(unsupported())
    }

    /// Nothing to delete.
    pub(crate) fn delete(self) {}
}

/// Always fails with `Unsupported`.
pub(crate) fn register_at_fork(
    _prepare: unsafe extern "C" fn(),
    _parent: unsafe extern "C" fn(),
    _child: unsafe extern "C" fn(),
) -> io::Result<()> {
    Err(unsupported())
}

/// No guarded pages here.
pub(crate) fn branch_targets_guarded() -> bool {
    false
}

/// Not on this platform.
pub(crate) fn map_wipe_on_fork_page() -> io::Result<Mapping> {
    Err(unsupported())
}

/// Nothing to keep from children here (nothing is ever mapped).
///
/// # Safety
/// None needed.
pub(in crate::sys) unsafe fn dont_fork(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Err(unsupported())
}

/// No process ids here; fork detection is never needed (nothing is mapped).
pub(crate) fn process_id() -> u64 {
    1
}

/// No process-wide barrier here: per-thread caches stay off.
pub(crate) fn register_process_barrier() -> io::Result<()> {
    Err(unsupported())
}

/// Never called: [`register_process_barrier`] fails.
pub(crate) fn process_barrier() -> io::Result<()> {
    Err(unsupported())
}

/// No such personality here.
pub(crate) fn read_implies_exec() -> bool {
    false
}

/// Never shown: [`read_implies_exec`] is false.
pub(crate) const READ_IMPLIES_EXEC_REASON: &str = "";

/// Not tried here.
pub(crate) fn rwx_mapping_in_child() -> ChildRwx {
    ChildRwx::NotTried(unsupported())
}

/// No Windows process mitigation policies here.
pub(crate) fn process_mitigations() -> [Option<bool>; 4] {
    [None; 4]
}

// No Control Flow Guard here: nothing is registered.
#[path = "no_call_targets.rs"]
mod no_call_targets;
pub(crate) use no_call_targets::{call_targets_registered, set_call_target};
