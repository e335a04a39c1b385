//! Status codes, this thread's last error message, and the guard every
//! fallible function runs its body in: a failure becomes a status plus a
//! message, a panic becomes `WX_ERR_PANIC`, and nothing unwinds into C.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a fallible function returns: `WX_OK`, or why it failed (then
/// `wx_last_error()` says more). The numbers are stable: new codes are
/// added at the end, none is renumbered.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum wx_status {
    /// Success.
    WX_OK = 0,
    /// A handle, `out`, `args`, `target` or buffer argument was NULL.
    WX_ERR_NULL_ARGUMENT = 1,
    /// An argument has a value the function cannot take: a bad signature
    /// letter, more than 16 arguments, an unknown strategy, a zero size.
    WX_ERR_INVALID_ARGUMENT = 2,
    /// A write past a block's or span's capacity, or a length past it
    /// (nothing was written).
    WX_ERR_OUT_OF_BOUNDS = 3,
    /// The object is in the wrong state for the call: a write to a sealed
    /// block or span.
    WX_ERR_BAD_STATE = 4,
    /// The heap still has live thunks or spans (`wx_heap_free` refused;
    /// the heap is kept).
    WX_ERR_IN_USE = 5,
    /// Out of memory, or a limit was reached: the heap's `max_reserved`,
    /// every static trampoline of the binary in use, a size too large.
    WX_ERR_NO_MEMORY = 6,
    /// The process may not make executable memory this way (W^X policies:
    /// MDWE, SELinux, seccomp, ACG), or no way at all.
    WX_ERR_DENIED = 7,
    /// The operating system refused or failed a call (the message names
    /// it and its error).
    WX_ERR_OS = 8,
    /// Not supported on this platform or architecture.
    WX_ERR_UNSUPPORTED = 9,
    /// The heap cannot be entered now: the calling thread is already
    /// inside it (a signal handler or allocator hook), or it is exiting.
    WX_ERR_BUSY = 10,
    /// A bug in wxthunk: a panic was caught at the API boundary.
    WX_ERR_PANIC = 11,
}

use wx_status::*;

/// A failure on its way to C: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    status: wx_status,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: wx_status, message: impl Display) -> Self {
        Failure {
            status,
            message: message.to_string(),
        }
    }

    /// A NULL `what` argument.
    pub(crate) fn null(what: &str) -> Self {
        Failure::new(WX_ERR_NULL_ARGUMENT, format_args!("{what} is NULL"))
    }
}

impl From<wxthunk::Error> for Failure {
    fn from(e: wxthunk::Error) -> Self {
        use wxthunk::Error as E;
        let status = match &e {
            E::SizeOverflow { .. }
            | E::ZeroSize
            | E::InvalidSetting { .. }
            | E::InvalidSignature { .. } => WX_ERR_INVALID_ARGUMENT,
            E::OutOfBounds { .. } | E::PageFull { .. } => WX_ERR_OUT_OF_BOUNDS,
            E::TooLarge { .. } | E::HeapExhausted { .. } | E::TrampolinesExhausted { .. } => {
                WX_ERR_NO_MEMORY
            }
            E::StrategyUnavailable { .. } | E::NoExecutableMemory { .. } => WX_ERR_DENIED,
            E::HeapUnavailable { .. } => WX_ERR_BUSY,
            E::Unsupported { .. } => WX_ERR_UNSUPPORTED,
            E::Os { source, .. } if source.kind() == std::io::ErrorKind::OutOfMemory => {
                WX_ERR_NO_MEMORY
            }
            _ => WX_ERR_OS,
        };
        Failure::new(status, e.with_causes())
    }
}

impl<T> From<wxthunk::TransitionError<T>> for Failure {
    fn from(e: wxthunk::TransitionError<T>) -> Self {
        e.into_parts().0.into()
    }
}

thread_local! {
    /// This thread's last failure message (`""` until one).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `failure` as this thread's last error; returns its status.
fn record(failure: Failure) -> wx_status {
    let message =
        CString::new(failure.message.replace('\0', "\\0")).expect("interior NULs were replaced");
    // During thread exit the slot may be gone: the status still says it.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = message);
    failure.status
}

/// Runs `body`: its failure or panic becomes a status and this thread's
/// message, so no error and no unwinding reaches C.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> wx_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => WX_OK,
        Ok(Err(failure)) => record(failure),
        Err(panic) => record(panic_failure(panic)),
    }
}

/// Runs `body`, which returns a value for C; a panic returns `fallback`
/// (and sets the message).
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(panic) => {
            record(panic_failure(panic));
            fallback
        }
    }
}

fn panic_failure(panic: Box<dyn std::any::Any + Send>) -> Failure {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    Failure::new(WX_ERR_PANIC, format_args!("internal error (panic): {what}"))
}

/// This thread's last failure message: never NULL, `""` if no call on
/// this thread has failed. Another thread's failures are not seen.
///
/// Valid until this thread's next failing call (or its exit); copy it to
/// keep it.
///
/// Thread safety: any thread; each sees its own.
#[unsafe(no_mangle)]
pub extern "C" fn wx_last_error() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(EMPTY.as_ptr().cast())
}

/// The name of a status code, e.g. `"WX_ERR_NULL_ARGUMENT"`; `"unknown
/// status"` for a number that is none. Never NULL; a static string.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn wx_status_name(status: c_int) -> *const c_char {
    let name: &'static [u8] = match status {
        0 => b"WX_OK\0",
        1 => b"WX_ERR_NULL_ARGUMENT\0",
        2 => b"WX_ERR_INVALID_ARGUMENT\0",
        3 => b"WX_ERR_OUT_OF_BOUNDS\0",
        4 => b"WX_ERR_BAD_STATE\0",
        5 => b"WX_ERR_IN_USE\0",
        6 => b"WX_ERR_NO_MEMORY\0",
        7 => b"WX_ERR_DENIED\0",
        8 => b"WX_ERR_OS\0",
        9 => b"WX_ERR_UNSUPPORTED\0",
        10 => b"WX_ERR_BUSY\0",
        11 => b"WX_ERR_PANIC\0",
        _ => b"unknown status\0",
    };
    name.as_ptr().cast()
}

/// Writes `text` to C's `buf` of `len` bytes as `snprintf` does: at most
/// `len - 1` bytes and a NUL (nothing when `len` is 0); returns the full
/// length. `buf` may be NULL when `len` is 0.
///
/// # Safety
/// `buf` is NULL with `len` 0, or valid for `len` bytes of writes.
pub(crate) unsafe fn copy_out(text: &str, buf: *mut c_char, len: usize) -> usize {
    if len > 0 && !buf.is_null() {
        let n = text.len().min(len - 1);
        // SAFETY: the caller's buffer has `len` bytes; `n + 1 <= len`, and
        // the source is a Rust string, which cannot overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}

/// The `len` bytes at `bytes` that a write appends to `what` (a block or a
/// span holding `held` of `capacity` bytes): `None` for nothing to write,
/// an error for NULL bytes or bytes past the capacity (then nothing is
/// written).
///
/// # Safety
/// `bytes` is NULL or valid for `len` bytes of reads, for `'a`.
pub(crate) unsafe fn appended<'a>(
    bytes: *const std::ffi::c_void,
    len: usize,
    what: &str,
    held: usize,
    capacity: usize,
) -> Result<Option<&'a [u8]>, Failure> {
    if len == 0 {
        return Ok(None);
    }
    if bytes.is_null() {
        return Err(Failure::null("bytes"));
    }
    if len > capacity - held {
        return Err(Failure::new(
            wx_status::WX_ERR_OUT_OF_BOUNDS,
            format_args!("{len} bytes do not fit: the {what} holds {held} of {capacity} bytes"),
        ));
    }
    // SAFETY: `len` readable bytes (the caller's contract).
    Ok(Some(unsafe {
        std::slice::from_raw_parts(bytes.cast::<u8>(), len)
    }))
}

/// Frees a handle made by `Box::into_raw` (NULL: a no-op).
///
/// # Safety
/// `p` is NULL or a live handle of type `T` from `Box::into_raw`, not used
/// afterwards.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    guard_value((), || {
        if !p.is_null() {
            // SAFETY: the caller's contract; freed once.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

/// Writes `value` to `*out` when `out` is not NULL (outputs are cleared
/// on failure too).
///
/// # Safety
/// `out` is NULL or valid for a write.
pub(crate) unsafe fn set_out<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: the caller's contract.
        unsafe { out.write(value) };
    }
}
