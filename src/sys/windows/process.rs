//! The process and its threads: a destructor at thread exit (fiber-local
//! storage), the process-wide memory barrier, the process id; and the fork
//! hooks, which Windows has no use for (it has no `fork()`).

use std::ffi::c_void;
use std::io;

use windows_sys::Win32::System::Threading::{
    FLS_OUT_OF_INDEXES, FlsAlloc, FlsFree, FlsSetValue, FlushProcessWriteBuffers,
    GetCurrentProcessId,
};

use crate::sys::Mapping;

/// A destructor run at the exit of each thread that set a value for it: a
/// fiber-local storage index with a callback (`FlsAlloc`), which Windows
/// calls at thread exit for every thread (fiber) whose value is not null.
#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
pub(crate) struct ThreadExitKey(u32);

#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
impl ThreadExitKey {
    /// Creates a key whose destructor is `dtor`.
    pub(crate) fn new(dtor: unsafe extern "C" fn(*mut c_void)) -> io::Result<Self> {
        // 32-bit Windows, where "C" and "system" differ, is refused here.
        const { assert!(cfg!(target_pointer_width = "64")) };
        // SAFETY: `extern "C"` and `extern "system"` are one convention on
        // every 64-bit Windows target (the assertion above), and a
        // `*mut c_void` argument is passed exactly as a `*const c_void`
        // one, so the callback type Windows calls is the function's own.
        let callback: unsafe extern "system" fn(*const c_void) = unsafe {
            std::mem::transmute::<
                unsafe extern "C" fn(*mut c_void),
                unsafe extern "system" fn(*const c_void),
            >(dtor)
        };
        // SAFETY: the callback lives as long as the program.
        let index = unsafe { FlsAlloc(Some(callback)) };
        if index == FLS_OUT_OF_INDEXES {
            return Err(io::Error::last_os_error());
        }
        Ok(ThreadExitKey(index))
    }

    /// The key as an integer (to keep it in an atomic).
    pub(crate) fn into_raw(self) -> usize {
        self.0 as usize
    }

    /// The key [`into_raw`](Self::into_raw) gave.
    pub(crate) fn from_raw(raw: usize) -> Self {
        ThreadExitKey(raw as u32)
    }

    /// Sets this thread's value (non-null: the destructor runs for it).
    pub(crate) fn set(&self, value: *mut c_void) -> io::Result<()> {
        // SAFETY: the index was made by `new`; any pointer may be stored.
        if unsafe { FlsSetValue(self.0, value) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Deletes a key no thread has set a value for (so `FlsFree`, which
    /// calls the callback for every value still set, calls nothing).
    pub(crate) fn delete(self) {
        // SAFETY: the index was made by `new` and is not used again.
        unsafe { FlsFree(self.0) };
    }
}

fn no_fork() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "Windows has no fork(): nothing to prepare for",
    )
}

/// Fails: there is no `fork()` to run handlers around (the heaps then skip
/// their fork bookkeeping).
pub(crate) fn register_at_fork(
    _prepare: unsafe extern "C" fn(),
    _parent: unsafe extern "C" fn(),
    _child: unsafe extern "C" fn(),
) -> io::Result<()> {
    Err(no_fork())
}

/// Fails: no process is ever a copy of this one, so the fork detector falls
/// back to [`process_id`], which never changes.
pub(crate) fn map_wipe_on_fork_page() -> io::Result<Mapping> {
    Err(no_fork())
}

/// This process's id.
pub(crate) fn process_id() -> u64 {
    // SAFETY: no preconditions.
    u64::from(unsafe { GetCurrentProcessId() })
}

/// Nothing to register: [`process_barrier`] needs no set-up on Windows.
pub(crate) fn register_process_barrier() -> io::Result<()> {
    Ok(())
}

/// Makes every thread of this process that is running now execute a full
/// memory barrier before this returns (`FlushProcessWriteBuffers`, which
/// interrupts every processor running one of its threads): the heavy side
/// of an asymmetric barrier whose light side is a compiler fence.
pub(crate) fn process_barrier() -> io::Result<()> {
    // SAFETY: no preconditions.
    unsafe { FlushProcessWriteBuffers() };
    Ok(())
}
