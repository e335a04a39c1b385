//! The C API of wxthunk (`capi/include/wxthunk.h`, generated from this
//! crate by cbindgen; `wxthunk.hpp` is the C++ layer over it).
//!
//! Design, in the style of rustls-ffi:
//! - Every object is an opaque handle made by a `*_new` function into an
//!   `out` pointer and freed by its `*_free` (NULL: a no-op). Thunks and
//!   spans hold a reference to their heap (an `Arc`), so a heap cannot go
//!   while they live: `wx_heap_free` refuses, `wx_heap_release` leaves it
//!   to the last of them.
//! - Every fallible function returns a `wx_status` and, on failure, sets
//!   this thread's message (`wx_last_error`); outputs are NULL on failure.
//!   NULL arguments are errors, never crashes. Each body runs in
//!   `status::guard`, so a panic becomes `WX_ERR_PANIC` and nothing
//!   unwinds into C; nothing aborts.
//! - Thread safety and ownership are stated per function in the header.

// Every exported function checks its pointers for NULL and documents what
// else it needs of them (`# Safety`); the C names are the contract.
#![allow(clippy::missing_safety_doc)]

mod block;
mod heap;
mod span;
mod status;
mod thunk;

use std::ffi::c_char;

pub use block::{
    wx_block, wx_block_capacity, wx_block_code, wx_block_exec, wx_block_free, wx_block_len,
    wx_block_new, wx_block_set_len, wx_block_writable, wx_block_write,
};
pub use heap::{
    wx_heap, wx_heap_compact, wx_heap_free, wx_heap_new, wx_heap_new_with, wx_heap_options,
    wx_heap_release, wx_heap_stats, wx_stats, wx_strategy,
};
pub use span::{
    wx_span, wx_span_capacity, wx_span_code, wx_span_exec, wx_span_free, wx_span_new, wx_span_page,
    wx_span_write,
};
pub use status::{wx_last_error, wx_status, wx_status_name};
pub use thunk::{wx_thunk, wx_thunk_fn, wx_thunk_free, wx_thunk_new};

/// The major version of the library this header belongs to.
pub const WXTHUNK_VERSION_MAJOR: u32 = 0;
/// The minor version.
pub const WXTHUNK_VERSION_MINOR: u32 = 1;
/// The patch version.
pub const WXTHUNK_VERSION_PATCH: u32 = 0;

/// The version of the library linked in, e.g. `"0.1.0"` (compare with the
/// header's `WXTHUNK_VERSION`). A static string.
#[unsafe(no_mangle)]
pub extern "C" fn wx_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The size of a memory page of this system in bytes (block capacities
/// are multiples of it).
#[unsafe(no_mangle)]
pub extern "C" fn wx_page_size() -> usize {
    status::guard_value(0, wxthunk::page_size)
}

/// What this process may do with executable memory and which strategy
/// wxthunk picks, as JSON (the `wxthunk probe --json` report), written
/// as `snprintf` writes: at most `len - 1` bytes and a NUL, nothing when
/// `len` is 0 (`buf` may then be NULL). Returns the full length, so
/// `wx_probe_json(NULL, 0) + 1` bytes hold it all. The probe runs once per
/// process; later calls read its result.
///
/// Thread safety: any thread.
///
/// # Safety
/// `buf` is NULL with `len` 0, or valid for `len` bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_probe_json(buf: *mut c_char, len: usize) -> usize {
    status::guard_value(0, || {
        // SAFETY: the caller's contract.
        unsafe { status::copy_out(&wxthunk::probe().to_json(), buf, len) }
    })
}

/// The probe's report as text for people (`wxthunk probe`), written as
/// `wx_probe_json` writes.
///
/// # Safety
/// As `wx_probe_json`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_probe_text(buf: *mut c_char, len: usize) -> usize {
    status::guard_value(0, || {
        // SAFETY: the caller's contract.
        unsafe { status::copy_out(&wxthunk::probe().to_string(), buf, len) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_macros_are_the_package_version() {
        let v = format!("{WXTHUNK_VERSION_MAJOR}.{WXTHUNK_VERSION_MINOR}.{WXTHUNK_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        assert_eq!(v, wxthunk::VERSION);
    }
}
