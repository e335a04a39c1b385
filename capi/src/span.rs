//! `wx_span`: a piece of code on a heap, written then sealed (wxthunk's
//! `Span` and `ExecSpan`): small snippets share the heap's pages, and
//! `wx_span_page` is member_thunk's `allocate_page` (a page to write many
//! thunks of one's own into, sealed once).

use std::ffi::c_void;
use std::io::Write;
use std::sync::Arc;

use wxthunk::{ExecSpan, Span};

use crate::heap::{resolve, wx_heap};
use crate::status::{Failure, appended, free_handle, guard, guard_value, set_out, wx_status};

/// A span of code on a heap. Opaque.
#[allow(non_camel_case_types)]
pub struct wx_span {
    /// Dropped first: the code goes before the heap reference below.
    state: State,
    _heap: Option<Arc<wx_heap>>,
}

enum State {
    Writable(Span<'static>),
    Sealed(ExecSpan<'static>),
    Moving,
}

/// Borrows a span handle.
///
/// # Safety
/// `s` is NULL or a live span not used elsewhere meanwhile.
unsafe fn span<'a>(s: *mut wx_span) -> Result<&'a mut wx_span, Failure> {
    // SAFETY: the caller's contract.
    unsafe { s.as_mut() }.ok_or_else(|| Failure::null("the span"))
}

/// Makes a span of `len` bytes (its capacity) on `heap` (NULL: the global
/// heap), writable. Nothing is executable until `wx_span_exec`.
///
/// Ownership: `*out` is the caller's, freed by `wx_span_free`; it keeps its
/// heap alive. `*out` is NULL on failure.
///
/// Thread safety: a span is used by one thread at a time; its sealed code
/// may be called from any thread. Spans of one heap may be made and freed
/// from any threads at once.
///
/// Errors: `WX_ERR_NULL_ARGUMENT` (out), `WX_ERR_INVALID_ARGUMENT` (`len`
/// 0), `WX_ERR_NO_MEMORY` (larger than a region, or the heap's limit),
/// `WX_ERR_UNSUPPORTED` (a static-trampoline heap has no spans),
/// `WX_ERR_OS`.
///
/// # Safety
/// `heap` is NULL or a live handle; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_span_new(
    heap: *mut wx_heap,
    len: usize,
    out: *mut *mut wx_span,
) -> wx_status {
    // SAFETY: the caller's contract.
    unsafe { new_span(heap, out, |h| h.alloc(len)) }
}

/// Makes a span of one whole page on `heap` (NULL: the global heap), as
/// member_thunk's `allocate_page`: write several pieces of code into it,
/// seal it once.
///
/// Ownership, thread safety, errors: as `wx_span_new`.
///
/// # Safety
/// As `wx_span_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_span_page(heap: *mut wx_heap, out: *mut *mut wx_span) -> wx_status {
    // SAFETY: the caller's contract.
    unsafe { new_span(heap, out, |h| h.allocate_page()) }
}

/// A span made by `make` on the heap `heap` names.
///
/// # Safety
/// As `wx_span_new`.
unsafe fn new_span(
    heap: *mut wx_heap,
    out: *mut *mut wx_span,
    make: impl FnOnce(&'static wxthunk::Heap) -> wxthunk::Result<Span<'static>>,
) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { set_out(out, std::ptr::null_mut()) };
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: the caller's contract.
        let (heap, keep) = unsafe { resolve(heap) }?;
        let span = Box::new(wx_span {
            state: State::Writable(make(heap)?),
            _heap: keep,
        });
        // SAFETY: checked not NULL; valid (the caller's contract).
        unsafe { out.write(Box::into_raw(span)) };
        Ok(())
    })
}

/// Appends `len` bytes at `bytes` to the span's code.
///
/// Errors: `WX_ERR_NULL_ARGUMENT` (s; bytes with `len` > 0),
/// `WX_ERR_OUT_OF_BOUNDS` past the capacity (nothing written),
/// `WX_ERR_BAD_STATE` once sealed, `WX_ERR_NO_MEMORY`.
///
/// # Safety
/// `s` is NULL or a live span; `bytes` is NULL or valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_span_write(
    s: *mut wx_span,
    bytes: *const c_void,
    len: usize,
) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { span(s) }?;
        let State::Writable(span) = &mut s.state else {
            return Err(Failure::new(
                wx_status::WX_ERR_BAD_STATE,
                "the span is sealed; a span is written once",
            ));
        };
        // SAFETY: `bytes` is NULL or valid for `len` bytes (the caller's
        // contract), for this call.
        let src = unsafe { appended(bytes, len, "span", span.len(), span.capacity()) }?;
        let Some(src) = src else { return Ok(()) };
        span.write_all(src)
            .map_err(|e| Failure::new(wx_status::WX_ERR_NO_MEMORY, e))
    })
}

/// Seals the span: its code becomes executable (read+execute) and can no
/// longer be written. Sealing a sealed span does nothing. On failure the
/// span stays writable, its bytes kept.
///
/// Errors: `WX_ERR_NULL_ARGUMENT`, `WX_ERR_NO_MEMORY`, `WX_ERR_DENIED`,
/// `WX_ERR_OS`.
///
/// # Safety
/// `s` is NULL or a live span.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_span_exec(s: *mut wx_span) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { span(s) }?;
        match std::mem::replace(&mut s.state, State::Moving) {
            State::Writable(span) => match span.try_exec() {
                Ok(sealed) => s.state = State::Sealed(sealed),
                Err(e) => {
                    let (error, span) = e.into_parts();
                    s.state = State::Writable(span);
                    return Err(error.into());
                }
            },
            other => s.state = other,
        }
        Ok(())
    })
}

/// The executable address of byte `offset` of the span's code: NULL
/// unless the span is sealed and `offset` < its length. Valid until the
/// span is freed.
///
/// # Safety
/// `s` is NULL or a live span.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_span_code(s: *const wx_span, offset: usize) -> *mut c_void {
    guard_value(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live span (the caller's contract).
        match unsafe { s.as_ref() }.map(|s| &s.state) {
            Some(State::Sealed(sealed)) if offset < sealed.len() => {
                sealed.as_ptr().wrapping_add(offset).cast_mut().cast()
            }
            _ => std::ptr::null_mut(),
        }
    })
}

/// The span's capacity in bytes (0 for NULL).
///
/// # Safety
/// `s` is NULL or a live span.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_span_capacity(s: *const wx_span) -> usize {
    // SAFETY: NULL or a live span (the caller's contract).
    match unsafe { s.as_ref() }.map(|s| &s.state) {
        Some(State::Writable(span)) => span.capacity(),
        Some(State::Sealed(sealed)) => sealed.len(),
        _ => 0,
    }
}

/// Frees a span: its code goes at once. NULL: a no-op. Releases its
/// reference to its heap.
///
/// # Safety
/// `s` is NULL or a live span, not used afterwards, none of its code
/// running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_span_free(s: *mut wx_span) {
    // SAFETY: from `wx_span_new`/`wx_span_page` (the caller's contract).
    unsafe { free_handle(s) }
}
