//! `wx_thunk`: a bare function pointer that calls a C target with the
//! caller's arguments followed by a context pointer (wxthunk's
//! `DynThunk`), from a signature given as letters.

use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;

use wxthunk::{ArgClass, DynThunk};

use crate::heap::{resolve, wx_heap};
use crate::status::{Failure, free_handle, guard, guard_value, set_out, wx_status};

/// The most letters a signature has.
const MAX_ARGS: usize = 16;

/// A thunk. Opaque.
#[allow(non_camel_case_types)]
pub struct wx_thunk {
    /// Dropped first: the code goes before the heap reference below.
    thunk: DynThunk<'static>,
    /// The reference to a `wx_heap` that keeps it alive (`None`: the
    /// global heap, which lives as long as the process).
    _heap: Option<Arc<wx_heap>>,
}

/// The classes of a signature's letters, in a fixed array (no allocation
/// on the creation path): the array and how many of it are used.
fn parse(args: &CStr) -> Result<([ArgClass; MAX_ARGS], usize), Failure> {
    let bytes = args.to_bytes();
    if bytes.len() > MAX_ARGS {
        return Err(Failure::new(
            wx_status::WX_ERR_INVALID_ARGUMENT,
            format_args!(
                "the signature \"{}\" has {} arguments; a thunk takes at most {MAX_ARGS}",
                args.to_string_lossy(),
                bytes.len()
            ),
        ));
    }
    let mut classes = [ArgClass::Integer; MAX_ARGS];
    for (i, (&letter, class)) in bytes.iter().zip(&mut classes).enumerate() {
        *class = match letter {
            b'i' => ArgClass::Integer,
            b'f' | b'd' => ArgClass::Float,
            other => return Err(bad_letter(args, i, other)),
        };
    }
    Ok((classes, bytes.len()))
}

#[cold]
fn bad_letter(args: &CStr, i: usize, letter: u8) -> Failure {
    Failure::new(
        wx_status::WX_ERR_INVALID_ARGUMENT,
        format_args!(
            "the signature \"{}\" has {:?} at position {i}; the letters are 'i' (an integer up \
             to 64 bits, bool or pointer), 'f' (float) and 'd' (double)",
            args.to_string_lossy(),
            char::from(letter)
        ),
    )
}

/// Makes a thunk: a function pointer (`wx_thunk_fn`) that calls `target`
/// with the caller's arguments followed by `ctx`.
///
/// `args` has one letter per argument, up to 16: `'i'` an integer of up to
/// 64 bits, a `bool` or a pointer; `'f'` a `float`; `'d'` a `double`; `""`
/// for none. Letters are case-sensitive. `target` is a function of the
/// platform's C calling convention taking those arguments and then
/// `void *ctx`, returning what the thunk's callers expect: any scalar or
/// `void` (not a struct: a struct returned through memory would shift the
/// arguments). `ctx` reaches the target unchanged, NULL included; the
/// thunk does not own it. `heap` NULL: the global heap.
///
/// Ownership: `*out` is the caller's, freed by `wx_thunk_free`; it keeps
/// its heap alive. `*out` is NULL on failure.
///
/// Thread safety: any thread, at once on one heap. The thunk's pointer may
/// be called from any thread, as often as the target allows.
///
/// Errors: `WX_ERR_NULL_ARGUMENT` (args, target, out),
/// `WX_ERR_INVALID_ARGUMENT` (a bad letter, more than 16),
/// `WX_ERR_NO_MEMORY`, `WX_ERR_DENIED`, `WX_ERR_BUSY` (made from a signal
/// handler that interrupted this heap on this thread), `WX_ERR_OS`.
///
/// # Safety
/// `heap` is NULL or a live handle; `args` is NULL or a NUL-terminated
/// string; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_thunk_new(
    heap: *mut wx_heap,
    args: *const c_char,
    target: *const c_void,
    ctx: *mut c_void,
    out: *mut *mut wx_thunk,
) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { set_out(out, std::ptr::null_mut()) };
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        if args.is_null() {
            return Err(Failure::null("args (the signature; \"\" for no arguments)"));
        }
        if target.is_null() {
            return Err(Failure::null("target"));
        }
        // SAFETY: a NUL-terminated string (the caller's contract).
        let (classes, n) = parse(unsafe { CStr::from_ptr(args) })?;
        // SAFETY: the caller's contract.
        let (heap, keep) = unsafe { resolve(heap) }?;
        let thunk = heap.dyn_thunk(&classes[..n], target, ctx)?;
        let boxed = Box::new(wx_thunk { thunk, _heap: keep });
        // SAFETY: checked not NULL; valid (the caller's contract).
        unsafe { out.write(Box::into_raw(boxed)) };
        Ok(())
    })
}

/// The thunk's function pointer, to be cast to the signature it was made
/// for; NULL for a NULL thunk. Valid until `wx_thunk_free`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `t` is NULL or a live thunk.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_thunk_fn(t: *const wx_thunk) -> *mut c_void {
    guard_value(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live thunk (the caller's contract).
        match unsafe { t.as_ref() } {
            Some(t) => t.thunk.as_ptr().cast_mut(),
            None => std::ptr::null_mut(),
        }
    })
}

/// Frees a thunk: its code goes at once (a later call through its pointer
/// is a bug). NULL: a no-op. Releases its reference to its heap.
///
/// Thread safety: any thread, but not while its pointer is being called.
///
/// # Safety
/// `t` is NULL or a live thunk, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_thunk_free(t: *mut wx_thunk) {
    // SAFETY: from `wx_thunk_new` (the caller's contract).
    unsafe { free_handle(t) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_parsed_and_checked() {
        assert_eq!(parse(c"").unwrap().1, 0);
        let (classes, n) = parse(c"ifd").unwrap();
        assert_eq!(
            classes[..n],
            [ArgClass::Integer, ArgClass::Float, ArgClass::Float]
        );
        assert!(parse(c"iiiiiiiiiiiiiiii").is_ok());
        for bad in [c"iiiiiiiiiiiiiiiii", c"I", c"ix", c"i d", c"p"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
