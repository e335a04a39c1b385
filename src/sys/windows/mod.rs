//! Windows, through `windows-sys`. This file: the page size and the raw
//! mapping primitives [`Mapping`](super::Mapping) is built on, over
//! `VirtualAlloc`/`VirtualProtect`/`VirtualFree`. The rest, one job a file:
//! - `process.rs`: thread-exit keys (fiber-local storage), the process-wide
//!   barrier, the process id, and the fork hooks Windows has no use for;
//! - `section.rs`: [`CodeFile`], the pagefile-backed section behind dual
//!   mapping;
//! - `cfg.rs`: Control Flow Guard, the registration of call targets;
//! - `probe.rs`: what the probe can ask (the mitigation policies);
//! - `../absent.rs`: what Windows has no equivalent of (directories and
//!   named files that hold code, an image file to map the trampoline table
//!   from again, Linux's probe facts).
//!
//! Memory is reserved and committed separately, so it stays proportional to
//! use: a [`Prot::None`] mapping is an address-space reservation only
//! (`MEM_RESERVE`), and a protection change to anything else commits the
//! pages it covers that are not committed yet. Every mapping is one whole
//! allocation (`Mapping` is never split), released whole by `unmap`.

mod cfg;
mod probe;
mod process;
mod section;

#[path = "../absent.rs"]
mod absent;

pub(crate) use absent::{
    CodeDir, ImageFile, mdwe_flags, memfd_noexec_sysctl, open_private_file, pax_flags,
    read_private_file, seccomp, selinux,
};
#[cfg(test)]
pub(crate) use cfg::{SIMULATE_CFG_VAR, recorded as recorded_call_targets};
pub(crate) use cfg::{enabled as call_targets_registered, set_call_target};
pub(crate) use probe::{process_mitigations, rwx_mapping_in_child};
#[cfg_attr(not(feature = "default-heap"), allow(unused_imports))]
pub(crate) use process::ThreadExitKey;
pub(crate) use process::{
    map_wipe_on_fork_page, process_barrier, process_id, register_at_fork, register_process_barrier,
};
pub(crate) use section::CodeFile;

use std::ffi::c_void;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_DECOMMIT, MEM_MAPPED, MEM_RELEASE, MEM_RESERVE, MEMORY_BASIC_INFORMATION,
    PAGE_EXECUTE_READ, PAGE_NOACCESS, PAGE_PROTECTION_FLAGS, PAGE_READWRITE, VirtualAlloc,
    VirtualFree, VirtualProtect, VirtualQuery,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

use super::Prot;

/// The mutex [`DefaultLock`](crate::DefaultLock) would use in a child of
/// `fork()`; Windows has no `fork()`, so it is never switched to.
pub(crate) type RawLock = parking_lot::RawMutex;

/// The operating system's name as reported by the probe.
pub(crate) const OS: &str = "windows";

/// What holds dual-mapped code here, for the probe's words: a
/// pagefile-backed section.
pub(crate) const CODE_FILE_KIND: &str = "section";
/// The call that makes one, for the probe's reasons.
pub(crate) const CODE_FILE_CREATE: &str = "CreateFileMappingW";

/// No: without placeholders a view cannot be mapped over an existing
/// reservation; a section's pages open only in its own executable view
/// (`section.rs`). So a dual-mapped [`Block`](crate::Block) keeps one
/// section for its life, and an in-place one (a file mapped over the
/// memory it was written in) is refused.
pub(crate) const MAPS_OVER_ANY_RANGE: bool = false;

/// The size of a page, asked of the system once and then cached.
#[inline]
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => {
            let size = system_info().0;
            PAGE_SIZE.store(size, Ordering::Relaxed);
            size
        }
        size => size,
    }
}

/// The page size and the allocation granularity (the alignment of every
/// reservation's start: 64 KiB on every Windows so far), as the system
/// reports them; 4 KiB and 64 KiB if it reports nonsense.
fn system_info() -> (usize, usize) {
    // SAFETY: SYSTEM_INFO is plain data; all zeros is a valid value.
    let mut info: SYSTEM_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid place to write; no other precondition.
    unsafe { GetSystemInfo(&mut info) };
    let page = usize::try_from(info.dwPageSize)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096);
    let granularity = usize::try_from(info.dwAllocationGranularity)
        .ok()
        .filter(|g| g.is_power_of_two() && *g >= page)
        .unwrap_or(64 * 1024);
    (page, granularity)
}

/// The page protection for `prot`. Never one that is writable and
/// executable: there is no such `Prot`. Guarded code gets no valid call
/// target where Control Flow Guard targets are registered one by one
/// (`cfg.rs`); otherwise the page's CFG bits are Windows' default.
fn page_protection(prot: Prot) -> PAGE_PROTECTION_FLAGS {
    let base = match prot {
        Prot::None => PAGE_NOACCESS,
        Prot::ReadWrite => PAGE_READWRITE,
        Prot::ReadExec | Prot::ReadExecGuarded => PAGE_EXECUTE_READ,
    };
    base | cfg::protection_bits(prot)
}

/// `ERROR_DYNAMIC_CODE_BLOCKED`: what `VirtualAlloc` and `VirtualProtect`
/// fail with when the process's dynamic-code policy (Arbitrary Code Guard)
/// refuses executable memory.
const ERROR_DYNAMIC_CODE_BLOCKED: i32 = 1655;

/// The test switch that makes this layer refuse executable memory the way
/// Arbitrary Code Guard does (Wine accepts the policy but does not enforce
/// it, so the tests cannot set the real one): set to `1` before the first
/// mapping, it makes every allocation or protection change to an
/// executable protection fail with `ERROR_DYNAMIC_CODE_BLOCKED`.
pub(crate) const SIMULATE_ACG_VAR: &str = "WXTHUNK_SIMULATE_ACG";

/// Whether [`SIMULATE_ACG_VAR`] is set (read once).
fn simulated_acg() -> bool {
    static STATE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var_os(SIMULATE_ACG_VAR).is_some_and(|v| v == "1");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        state => state == 2,
    }
}

/// Fails as Arbitrary Code Guard would for `prot`, where the test switch
/// says to.
fn refuse_simulated_acg(prot: Prot) -> io::Result<()> {
    if simulated_acg() && matches!(prot, Prot::ReadExec | Prot::ReadExecGuarded) {
        return Err(dynamic_code_blocked());
    }
    Ok(())
}

/// `ERROR_DYNAMIC_CODE_BLOCKED`, saying which policy refused.
fn dynamic_code_blocked() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the process's dynamic-code policy (Arbitrary Code Guard, \
         ProcessDynamicCodePolicy) forbids making executable memory \
         (ERROR_DYNAMIC_CODE_BLOCKED, 1655)",
    )
}

/// `ERROR_COMMITMENT_LIMIT`: memory and the paging file cannot back a new
/// commitment (the system's commit charge is exhausted).
const ERROR_COMMITMENT_LIMIT: i32 = 1455;

/// The last error of this thread as an `io::Error`: the dynamic-code
/// policy's refusal and an exhausted commit charge named as such.
fn last_error() -> io::Error {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(ERROR_DYNAMIC_CODE_BLOCKED) => dynamic_code_blocked(),
        Some(ERROR_COMMITMENT_LIMIT) => io::Error::new(
            io::ErrorKind::OutOfMemory,
            "the system's commit charge is exhausted: memory and the paging file \
             cannot back more (ERROR_COMMITMENT_LIMIT, 1455)",
        ),
        _ => e,
    }
}

/// What `VirtualQuery` says of the pages from `addr` on that share one
/// state and protection.
fn query(addr: *const u8) -> io::Result<MEMORY_BASIC_INFORMATION> {
    // SAFETY: plain data; all zeros is a valid value.
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid place for one record of the size passed;
    // any address may be queried.
    let n = unsafe {
        VirtualQuery(
            addr.cast(),
            &mut info,
            std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    if n == 0 {
        return Err(last_error());
    }
    Ok(info)
}

/// Calls `f(start, len, info)` for each run of pages of `ptr..ptr+len`
/// that share one state and protection, in order.
fn each_run(
    ptr: NonNull<u8>,
    len: usize,
    mut f: impl FnMut(*mut u8, usize, &MEMORY_BASIC_INFORMATION) -> io::Result<()>,
) -> io::Result<()> {
    let end = ptr.as_ptr() as usize + len;
    let mut at = ptr.as_ptr();
    while (at as usize) < end {
        let info = query(at)?;
        let run_end = (info.BaseAddress as usize + info.RegionSize).min(end);
        if run_end <= at as usize {
            return Err(io::Error::other("VirtualQuery returned an empty run"));
        }
        f(at, run_end - at as usize, &info)?;
        at = at.wrapping_add(run_end - at as usize);
    }
    Ok(())
}

/// Reserves `len` bytes (committing them too unless `prot` is
/// [`Prot::None`]), asking for address `hint` if that range is free (the
/// system picks another otherwise; nothing is ever replaced). The caller
/// owns the result: wrap it in a [`Mapping`](super::Mapping).
pub(in crate::sys) fn map_anon_near(
    len: usize,
    prot: Prot,
    hint: usize,
) -> io::Result<NonNull<u8>> {
    refuse_simulated_acg(prot)?;
    let kind = if prot == Prot::None {
        MEM_RESERVE
    } else {
        MEM_RESERVE | MEM_COMMIT
    };
    near_hint(hint, |at| {
        // SAFETY: a reservation at a free address (or anywhere, for null)
        // replaces nothing: VirtualAlloc fails where the range is in use.
        unsafe { VirtualAlloc(at as *const c_void, len, kind, page_protection(prot)) }
    })
}

/// Places something with `place(at)` at `hint`, rounded down to the
/// allocation granularity (every allocation and view starts on it), and
/// where that fails or there is no hint, anywhere (`place(0)`): the address
/// it got, or the system's last error.
fn near_hint(hint: usize, place: impl Fn(usize) -> *mut c_void) -> io::Result<NonNull<u8>> {
    let hint = hint & !(system_info().1 - 1);
    let mut ptr = if hint != 0 {
        place(hint)
    } else {
        std::ptr::null_mut()
    };
    if ptr.is_null() {
        ptr = place(0);
    }
    NonNull::new(ptr.cast()).ok_or_else(last_error)
}

/// Replaces `len` bytes at `at` with zero-filled memory of `prot`: their
/// pages are decommitted (their contents dropped), then committed again
/// unless `prot` is [`Prot::None`].
///
/// # Safety
/// `at..at+len` is a range of whole pages of one allocation made by
/// [`map_anon_near`] and owned by the caller, and nothing relies on what
/// was there.
pub(in crate::sys) unsafe fn map_anon_over(
    at: NonNull<u8>,
    len: usize,
    prot: Prot,
) -> io::Result<()> {
    decommit(at, len)?;
    if prot != Prot::None {
        commit(at.as_ptr(), len, prot)?;
    }
    Ok(())
}

/// Decommits whatever is committed in `ptr..ptr+len` (a section's view
/// cannot be: an error).
fn decommit(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    each_run(ptr, len, |at, n, info| {
        if info.Type == MEM_MAPPED {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a view of a section cannot be replaced in place",
            ));
        }
        if info.State != MEM_COMMIT {
            return Ok(());
        }
        // SAFETY: whole pages of an allocation the caller owns, whose
        // contents nothing relies on (the callers' contracts).
        if unsafe { VirtualFree(at.cast(), n, MEM_DECOMMIT) } == 0 {
            return Err(last_error());
        }
        Ok(())
    })
}

/// Commits `len` bytes at `at` with `prot` (`prot` is not `None`); pages
/// committed already keep their contents.
fn commit(at: *mut u8, len: usize, prot: Prot) -> io::Result<()> {
    refuse_simulated_acg(prot)?;
    // SAFETY: whole pages of a reservation the caller owns; committing
    // replaces nothing committed.
    let got = unsafe { VirtualAlloc(at.cast(), len, MEM_COMMIT, page_protection(prot)) };
    if got.is_null() {
        return Err(last_error());
    }
    Ok(())
}

/// Releases the allocation that starts at `ptr` (or unmaps the view there).
///
/// # Safety
/// - `ptr..ptr+len` is one whole allocation (or view) made by this module
///   and owned by the caller;
/// - nothing reads, writes or runs that range any more.
pub(in crate::sys) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    let info = query(ptr.as_ptr())?;
    debug_assert_eq!(info.AllocationBase, ptr.as_ptr().cast(), "{len} bytes");
    let ok = if info.Type == MEM_MAPPED {
        // SAFETY: a view the caller owns and nothing uses any more.
        unsafe {
            windows_sys::Win32::System::Memory::UnmapViewOfFile(
                windows_sys::Win32::System::Memory::MEMORY_MAPPED_VIEW_ADDRESS {
                    Value: ptr.as_ptr().cast(),
                },
            )
        }
    } else {
        // SAFETY: an allocation the caller owns whole and nothing uses any
        // more; MEM_RELEASE takes size 0 and frees all of it.
        unsafe { VirtualFree(ptr.as_ptr().cast(), 0, MEM_RELEASE) }
    };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(())
}

/// Changes the protection of `len` bytes at `ptr` to `prot`, committing
/// the pages that are only reserved (unless `prot` is `None`: reserved
/// pages are inaccessible already).
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages mapped by this module and owned
///   by the caller;
/// - no live Rust reference or running code relies on the access being
///   removed.
pub(in crate::sys) unsafe fn protect(ptr: NonNull<u8>, len: usize, prot: Prot) -> io::Result<()> {
    refuse_simulated_acg(prot)?;
    each_run(ptr, len, |at, n, info| {
        if info.State != MEM_COMMIT {
            return if prot == Prot::None {
                Ok(())
            } else {
                commit(at, n, prot)
            };
        }
        let mut old = 0;
        // SAFETY: whole committed pages the caller owns; nothing relies on
        // the old access (the caller's contract).
        if unsafe { VirtualProtect(at.cast(), n, page_protection(prot), &mut old) } == 0 {
            return Err(last_error());
        }
        Ok(())
    })
}

/// Drops the contents of `len` bytes at `ptr`: they read as zeros
/// afterwards, with the same protection. The committed pages are
/// decommitted (their memory goes back to the system) and committed again.
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages of an allocation made by
///   [`map_anon_near`] and owned by the caller;
/// - nothing relies on its contents.
pub(in crate::sys) unsafe fn discard(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    each_run(ptr, len, |at, n, info| {
        if info.State != MEM_COMMIT {
            return Ok(());
        }
        let protection = info.Protect;
        let run = NonNull::new(at).ok_or_else(|| io::Error::other("a run at address zero"))?;
        decommit(run, n)?;
        // SAFETY: the pages were committed with this protection a moment
        // ago, by us; they are ours.
        if unsafe { VirtualAlloc(at.cast(), n, MEM_COMMIT, protection) }.is_null() {
            return Err(last_error());
        }
        Ok(())
    })
}

/// Nothing to do: Windows has no `fork()`, so no child can inherit a
/// mapping.
///
/// # Safety
/// None needed: nothing changes.
pub(in crate::sys) unsafe fn dont_fork(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Ok(())
}

/// No page bit guards branch targets on Windows (CFG is a bitmap of valid
/// call targets, not a page property).
pub(crate) fn branch_targets_guarded() -> bool {
    false
}

/// No personality makes readable memory executable on Windows.
pub(crate) fn read_implies_exec() -> bool {
    false
}

/// Never shown: [`read_implies_exec`] is false.
pub(crate) const READ_IMPLIES_EXEC_REASON: &str = "";

#[cfg(test)]
mod tests {
    use super::*;

    /// The system's refusals that say what to do are named, not numbered:
    /// an exhausted commit charge (which Wine, overcommitting, never
    /// reports) and Arbitrary Code Guard.
    #[test]
    fn commitment_limit_and_acg_are_named() {
        use windows_sys::Win32::Foundation::SetLastError;
        for (code, kind, words) in [
            (
                ERROR_COMMITMENT_LIMIT,
                io::ErrorKind::OutOfMemory,
                "commit charge",
            ),
            (
                ERROR_DYNAMIC_CODE_BLOCKED,
                io::ErrorKind::PermissionDenied,
                "Arbitrary Code Guard",
            ),
        ] {
            // SAFETY: no preconditions.
            unsafe { SetLastError(code as u32) };
            let e = last_error();
            assert_eq!(e.kind(), kind);
            assert!(e.to_string().contains(words), "{e}");
            assert!(e.to_string().contains(&code.to_string()), "{e}");
        }
    }
}
