//! The process and its threads: a destructor at thread exit, fork
//! handlers, the page that tells a fork child from its parent, the process
//! id.

use std::io;

use libc::c_void;

use super::page_size;
use crate::sys::{Mapping, Prot};

/// A destructor run at the exit of each thread that set a value for it
/// (`pthread_key_create`). glibc runs these after every `thread_local!`
/// destructor of the thread (`__call_tls_dtors`, then the key destructors).
#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
pub(crate) struct ThreadExitKey(libc::pthread_key_t);

#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
impl ThreadExitKey {
    /// Creates a key whose destructor is `dtor`.
    pub(crate) fn new(dtor: unsafe extern "C" fn(*mut c_void)) -> io::Result<Self> {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid place to write; `dtor` lives as long as
        // the program.
        let ret = unsafe { libc::pthread_key_create(&mut key, Some(dtor)) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(ThreadExitKey(key))
    }

    /// The key as an integer (to keep it in an atomic).
    pub(crate) fn into_raw(self) -> usize {
        self.0 as usize
    }

    /// The key [`into_raw`](Self::into_raw) gave.
    pub(crate) fn from_raw(raw: usize) -> Self {
        ThreadExitKey(raw as libc::pthread_key_t)
    }

    /// Sets this thread's value (non-null: the destructor runs for it).
    pub(crate) fn set(&self, value: *mut c_void) -> io::Result<()> {
        // SAFETY: the key was created by `new`; any pointer may be stored.
        let ret = unsafe { libc::pthread_setspecific(self.0, value) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(())
    }

    /// Deletes a key no thread has set a value for.
    pub(crate) fn delete(self) {
        // SAFETY: the key was created by `new` and is not used again.
        unsafe { libc::pthread_key_delete(self.0) };
    }
}

/// Registers fork handlers (`pthread_atfork`): `prepare` runs in the parent
/// before `fork()`, `parent` and `child` after it in each process.
pub(crate) fn register_at_fork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> io::Result<()> {
    // SAFETY: the handlers are plain functions that live as long as the
    // program; registration has no other preconditions.
    let ret = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Maps one private page that the kernel zero-fills in every process made
/// by copying this one (`MADV_WIPEONFORK`, Linux 4.14+): libc `fork()`, raw
/// `clone()` without `CLONE_VM`, `SYS_fork`. What is written there reads as
/// zero in any such child, whatever path made it and whether or not any
/// fork handler ran.
pub(crate) fn map_wipe_on_fork_page() -> io::Result<Mapping> {
    let page = Mapping::anon(page_size(), Prot::ReadWrite)?;
    // SAFETY: the page was just mapped and is ours alone; the advice only
    // changes what a child sees there.
    if unsafe { libc::madvise(page.as_ptr().cast(), page.len(), libc::MADV_WIPEONFORK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(page)
}

/// This process's id: the fallback fork detector where `MADV_WIPEONFORK` is
/// missing (a system call each time).
pub(crate) fn process_id() -> u64 {
    // SAFETY: getpid has no preconditions.
    u64::from(unsafe { libc::getpid() }.unsigned_abs())
}

/// `membarrier(2)` commands (the kernel's ABI values).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Registers this process for [`process_barrier`] (`membarrier(2)`'s
/// private expedited command, Linux 4.14+). Fails where the kernel lacks it
/// or a seccomp filter refuses the call.
pub(crate) fn register_process_barrier() -> io::Result<()> {
    // SAFETY: the registration command takes no pointer; it only marks this
    // process's memory map for later barriers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes every thread of this process that is running now execute a full
/// memory barrier before this returns (`membarrier(2)`, private expedited):
/// the heavy side of an asymmetric barrier whose light side is a compiler
/// fence. Registers first when the process is not registered (a child of a
/// registered one may not be).
pub(crate) fn process_barrier() -> io::Result<()> {
    for _ in 0..2 {
        // SAFETY: the command takes no pointer and has no precondition
        // beyond registration, whose absence it reports as `EPERM`.
        let ret =
            unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EPERM) {
            return Err(err);
        }
        register_process_barrier()?;
    }
    Err(io::Error::from_raw_os_error(libc::EPERM))
}
