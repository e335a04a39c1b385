//! Linux, through the `libc` crate. This file: the page size and the raw
//! mapping primitives (`mmap`, `munmap`, `mprotect`, `madvise`) that
//! [`Mapping`](super::Mapping) is built on, with the `READ_IMPLIES_EXEC`
//! guard every one of them applies. The rest, one job a file:
//! - `code_file.rs`: [`CodeFile`], the memfd (or unlinked file) behind dual
//!   mapping;
//! - `code_dir.rs`: [`CodeDir`], the directory such files are made in where
//!   memfds are refused;
//! - `process.rs`: thread-exit keys, fork handlers, the wipe-on-fork page;
//! - `probe.rs`: the read-only look-ups the policy probe makes;
//! - `image.rs`: [`ImageFile`], this library's own file, for static
//!   trampolines.

mod code_dir;
mod code_file;
mod image;
mod private_file;
mod probe;
mod process;

pub(crate) use code_dir::CodeDir;
pub(crate) use code_file::CodeFile;
pub(crate) use image::ImageFile;
pub(crate) use private_file::{open_private_file, read_private_file};
pub(crate) use probe::{
    mdwe_flags, memfd_noexec_sysctl, pax_flags, process_mitigations, rwx_mapping_in_child, seccomp,
    selinux,
};
#[cfg_attr(not(feature = "default-heap"), allow(unused_imports))]
pub(crate) use process::ThreadExitKey;
pub(crate) use process::{
    map_wipe_on_fork_page, process_barrier, process_id, register_at_fork, register_process_barrier,
};

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_void};

use super::Prot;

/// The mutex [`DefaultLock`](crate::DefaultLock) uses in a child of
/// `fork()`: std's futex mutex, whose state is one word.
pub(crate) type RawLock = rustix_futex_sync::RawMutex;

/// The operating system's name as reported by the probe.
pub(crate) const OS: &str = "linux";

/// What holds dual-mapped code here, for the probe's words: a memfd (or,
/// where those are refused, an unlinked file in a directory).
pub(crate) const CODE_FILE_KIND: &str = "memfd";
/// The call that makes one, for the probe's reasons.
pub(crate) const CODE_FILE_CREATE: &str = "memfd_create";

/// Whether a file can be mapped over any part of an existing mapping
/// (`MAP_FIXED`): what lets a dual-mapped [`Block`](crate::Block) seal each
/// version of its code from a new file at the address it had (fork-safe),
/// and an in-place one be sealed at all.
pub(crate) const MAPS_OVER_ANY_RANGE: bool = true;

/// The size of a page, asked of the kernel once and then cached.
#[inline]
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            // A kernel that does not answer gets the smallest page any Linux
            // architecture uses; every size we compute is a multiple of it.
            let size = usize::try_from(raw)
                .ok()
                .filter(|s| s.is_power_of_two())
                .unwrap_or(4096);
            PAGE_SIZE.store(size, Ordering::Relaxed);
            size
        }
        size => size,
    }
}

pub(super) fn prot_bits(prot: Prot) -> c_int {
    match prot {
        Prot::None => libc::PROT_NONE,
        Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Prot::ReadExec => libc::PROT_READ | libc::PROT_EXEC,
        Prot::ReadExecGuarded => libc::PROT_READ | libc::PROT_EXEC | guard_bits(),
    }
}

/// Whether this kernel guards pages mapped with `PROT_BTI`: AArch64 with
/// BTI (Linux 5.8 or later on a CPU that has it, or qemu's `-cpu max`),
/// which says so in `AT_HWCAP2`. The kernel accepts `PROT_BTI` exactly
/// then. Never on other architectures.
pub(crate) fn branch_targets_guarded() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        /// `HWCAP2_BTI` of Linux's arm64 `uapi/asm/hwcap.h`.
        const HWCAP2_BTI: libc::c_ulong = 1 << 17;
        // SAFETY: getauxval reads the auxiliary vector; no preconditions.
        unsafe { libc::getauxval(libc::AT_HWCAP2) & HWCAP2_BTI != 0 }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// The `PROT_BTI` bit where the kernel guards pages, else nothing.
fn guard_bits() -> c_int {
    #[cfg(target_arch = "aarch64")]
    if branch_targets_guarded() {
        return libc::PROT_BTI;
    }
    0
}

/// Whether the `READ_IMPLIES_EXEC` personality is set (by `personality(2)`,
/// inherited, or by the kernel for a binary without a `PT_GNU_STACK`
/// header; `setarch -X` does not keep it on x86_64, where `exec` clears it
/// for a binary with a non-executable stack): then the kernel adds `PROT_EXEC` to every
/// `mmap`/`mprotect` asking for `PROT_READ`, so a read-write mapping would be
/// writable and executable. Asked of the kernel each time (one cheap system
/// call): the personality can change at any moment.
pub(crate) fn read_implies_exec() -> bool {
    // SAFETY: 0xffffffff only queries the personality; nothing changes.
    let persona = unsafe { libc::personality(0xffff_ffff) };
    persona != -1 && persona & libc::READ_IMPLIES_EXEC != 0
}

/// Why wxthunk refuses writable mappings under `READ_IMPLIES_EXEC`.
pub(crate) const READ_IMPLIES_EXEC_REASON: &str = "the READ_IMPLIES_EXEC personality is set (personality(2)): the kernel makes \
     every readable mapping executable, so a writable mapping would be writable and executable, \
     which wxthunk never makes; clear it with personality(persona & !READ_IMPLIES_EXEC)";

/// Refuses a mapping or protection change with `prot` if the kernel would
/// make it writable and executable at once.
pub(super) fn refuse_writable_exec(prot: Prot) -> io::Result<()> {
    if prot == Prot::ReadWrite && read_implies_exec() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            READ_IMPLIES_EXEC_REASON,
        ));
    }
    Ok(())
}

/// Where a new mapping goes: anywhere near a hint (the kernel never
/// replaces an existing mapping), or exactly at an address, replacing what
/// is there (`MAP_FIXED`).
#[derive(Clone, Copy)]
pub(super) enum Place {
    Near(usize),
    Over(NonNull<u8>),
}

/// `mmap(2)` of `len` bytes with `prot` and `flags` (`MAP_SHARED` or
/// `MAP_PRIVATE`, and `MAP_ANONYMOUS` with `fd == -1`), at `place`: the
/// one call every mapping of this module goes through, so the
/// `READ_IMPLIES_EXEC` guard cannot be missed.
///
/// # Safety
/// With [`Place::Over`], the range is whole pages mapped by `sys` and owned
/// by the caller, and nothing relies on what was mapped there. `fd` is open
/// (or -1 for anonymous memory).
pub(super) unsafe fn mmap(
    place: Place,
    len: usize,
    prot: Prot,
    flags: c_int,
    fd: c_int,
    offset: usize,
) -> io::Result<NonNull<u8>> {
    refuse_writable_exec(prot)?;
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
    let (addr, flags) = match place {
        Place::Near(hint) => (hint as *mut c_void, flags),
        Place::Over(at) => (at.as_ptr().cast(), flags | libc::MAP_FIXED),
    };
    // SAFETY: without MAP_FIXED the address is only a hint and nothing is
    // replaced; with it, the caller owns the range (see above).
    let ret = unsafe { libc::mmap(addr, len, prot_bits(prot), flags, fd, offset) };
    if ret == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let got =
        NonNull::new(ret.cast()).ok_or_else(|| io::Error::other("mmap returned address zero"))?;
    if let Place::Over(at) = place {
        debug_assert_eq!(got, at);
    }
    Ok(got)
}

/// Maps `len` bytes of private, zero-filled memory with `prot`, asking for
/// address `hint` if that range is free (the kernel picks another address
/// otherwise; nothing is ever replaced). The caller owns the result: wrap it
/// in a [`Mapping`](super::Mapping).
pub(in crate::sys) fn map_anon_near(
    len: usize,
    prot: Prot,
    hint: usize,
) -> io::Result<NonNull<u8>> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: a hint replaces nothing; no file.
    unsafe { mmap(Place::Near(hint), len, prot, flags, -1, 0) }
}

/// Replaces `len` bytes at `at` with private, zero-filled memory of
/// `prot`, in one step (`MAP_FIXED`).
///
/// # Safety
/// `at..at+len` is a range of whole pages mapped by `sys` and owned by the
/// caller, and nothing relies on what was mapped there.
pub(in crate::sys) unsafe fn map_anon_over(
    at: NonNull<u8>,
    len: usize,
    prot: Prot,
) -> io::Result<()> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: the caller's contract; no file.
    unsafe { mmap(Place::Over(at), len, prot, flags, -1, 0) }.map(drop)
}

/// Unmaps `len` bytes at `ptr`.
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages mapped by this module and owned
///   by the caller;
/// - nothing reads, writes or runs that range any more.
pub(in crate::sys) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and nothing uses it (see above).
    if unsafe { libc::munmap(ptr.as_ptr().cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Changes the protection of `len` bytes at `ptr` to `prot`.
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages mapped by this module and owned
///   by the caller;
/// - no live Rust reference or running code relies on the access being
///   removed.
pub(in crate::sys) unsafe fn protect(ptr: NonNull<u8>, len: usize, prot: Prot) -> io::Result<()> {
    refuse_writable_exec(prot)?;
    // SAFETY: the caller owns the range and nothing relies on the old access.
    if unsafe { libc::mprotect(ptr.as_ptr().cast(), len, prot_bits(prot)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops the contents of `len` bytes of private memory at `ptr`
/// (`MADV_DONTNEED`): they read as zeros afterwards. Changes no mapping, so
/// it works at the kernel's mapping limit.
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages of private anonymous memory
///   mapped by this module and owned by the caller;
/// - nothing relies on its contents.
pub(in crate::sys) unsafe fn discard(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and nothing relies on its contents.
    if unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Keeps `ptr..ptr+len` out of every process made by copying this one
/// (`MADV_DONTFORK`): in a child the range is simply not mapped, so a
/// writable alias of shared code can never be written by a child, on any
/// fork path.
///
/// # Safety
/// `ptr..ptr+len` is a range of whole pages mapped by this module and owned
/// by the caller.
pub(in crate::sys) unsafe fn dont_fork(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range; the advice changes only what a
    // child inherits.
    if unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTFORK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// No Control Flow Guard here: nothing is registered.
#[path = "../no_call_targets.rs"]
mod no_call_targets;
pub(crate) use no_call_targets::{call_targets_registered, set_call_target};
