//! The platform layer: one private module per operating system with the same
//! small API, chosen by `cfg_attr(path)` (the memmap2 layout). Everything
//! above this module is platform-independent; no `cfg(target_os)` appears
//! outside it.
//!
//! The API each platform module provides:
//! - `page_size() -> usize` (queried once, then cached)
//! - the raw mapping primitives [`Mapping`] is built on (`map_anon_near`,
//!   `map_anon_over`, `unmap`, `protect`, `discard`, `dont_fork`), visible
//!   only inside `sys`
//! - `CodeFile`: a file without a name (a `memfd` on Linux, or an unlinked
//!   file in a `CodeDir`) that can be mapped several times, for the
//!   dual-mapping strategies
//! - `CodeDir`: a directory such files can be made in (`candidates`,
//!   `open`, which refuses a filesystem mounted `noexec`)
//! - `open_private_file`, `read_private_file`: a file of this process's
//!   own at a path others can guess (perf's map), never through a link,
//!   a FIFO or another user's file
//! - `ImageFile`: the file holding part of this process's own code, found
//!   and opened so that it can be mapped again (static trampolines)
//! - (`flush_icache` and `flush_icache_views` are this file's: the
//!   architecture's cache maintenance, the same on every platform so far)
//! - probe helpers: `mdwe_flags`, `memfd_noexec_sysctl`, `selinux`,
//!   `seccomp`, `pax_flags`, `rwx_mapping_in_child` (Linux's facts), and
//!   `process_mitigations` (Windows' mitigation policies)
//! - fork support: `register_at_fork`, `map_wipe_on_fork_page`,
//!   `process_id` (used by `heap/fork.rs`)
//! - `register_process_barrier`, `process_barrier`: the heavy side of an
//!   asymmetric memory barrier (`membarrier(2)`), for the global heap's
//!   per-thread caches
//! - `ThreadExitKey`: a destructor at thread exit (per-thread heaps)
//! - `read_implies_exec`: whether the kernel would make a read-write mapping
//!   executable (every read-write mapping is refused then)
//! - `RawLock`: the mutex `DefaultLock` switches to in a fork child
//!
//! On platforms without support (`unsupported.rs`) every constructor fails
//! with `Unsupported`, and the types that only a working constructor could
//! make (`CodeFile`, `CodeDir`, `ImageFile`) are uninhabited, as in
//! memmap2's stub.

// Windows: `windows/mod.rs` (no fork; dual mapping and the image file's
// table are not written yet, so those are `absent.rs`'s there).
#[cfg_attr(target_os = "linux", path = "linux/mod.rs")]
#[cfg_attr(windows, path = "windows/mod.rs")]
#[cfg_attr(not(any(target_os = "linux", windows)), path = "unsupported.rs")]
mod platform;

mod mapping;

pub(crate) use mapping::Mapping;
pub(crate) use platform::*;

/// Makes instruction fetches from `ptr..ptr+len` see what was written
/// there: the architecture's maintenance (nothing on x86_64, which keeps
/// fetches coherent with stores; clean and invalidate by address on
/// AArch64), on every platform so far. (Windows ARM64 would call
/// `FlushInstructionCache` instead: ARCHITECTURE.md.)
pub(crate) fn flush_icache(ptr: *const u8, len: usize) {
    crate::arch::flush_icache(ptr, len);
}

/// Makes instruction fetches from `executed..executed+len` see what was
/// written at `written..written+len`, another view of the same memory.
pub(crate) fn flush_icache_views(written: *const u8, executed: *const u8, len: usize) {
    crate::arch::flush_icache_views(written, executed, len);
}

/// Memory protection of a mapping. There is deliberately no
/// read-write-execute value: wxthunk never asks for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prot {
    /// No access: an address-space reservation.
    None,
    /// Readable and writable, never executable.
    ReadWrite,
    /// Readable and executable, never writable.
    ReadExec,
    /// Readable and executable, never writable, and guarded where the
    /// kernel offers it ([`branch_targets_guarded`]): AArch64's `PROT_BTI`,
    /// so an indirect branch into the pages must land on a `bti`
    /// instruction. Elsewhere the same as [`ReadExec`](Self::ReadExec).
    ReadExecGuarded,
}

impl Prot {
    /// Read+exec, guarded when `guarded` is.
    pub(crate) fn exec(guarded: bool) -> Prot {
        if guarded {
            Prot::ReadExecGuarded
        } else {
            Prot::ReadExec
        }
    }
}

/// What a short-lived child process saw when it tried to map memory that is
/// writable and executable at once (the parent never does).
// Only a platform that can start such a child makes the first three.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum ChildRwx {
    /// The mapping succeeded.
    Allowed,
    /// `mmap` failed with this error.
    Refused(std::io::Error),
    /// The child was killed by this signal (a seccomp filter that kills).
    Killed(i32),
    /// The child could not be started or waited for.
    NotTried(std::io::Error),
}
