//! `wx_block`: one mapping of code, written, then sealed read+execute as a
//! whole, and writable again for re-JIT (wxthunk's `Block` and
//! `ExecBlock`, as one handle whose state changes).

use std::ffi::c_void;
use std::io::Write;

use wxthunk::{Block, ExecBlock};

use crate::status::{Failure, appended, free_handle, guard, guard_value, set_out, wx_status};

/// A block of code. Opaque.
#[allow(non_camel_case_types)]
pub struct wx_block {
    state: State,
}

enum State {
    Writable(Block),
    Sealed(ExecBlock),
    /// Only between taking the block out for a transition and putting it
    /// (or its replacement) back.
    Moving,
}

/// Borrows a block handle.
///
/// # Safety
/// `b` is NULL or a live block not used elsewhere meanwhile.
unsafe fn block<'a>(b: *mut wx_block) -> Result<&'a mut wx_block, Failure> {
    // SAFETY: the caller's contract.
    unsafe { b.as_mut() }.ok_or_else(|| Failure::null("the block"))
}

fn sealed_error() -> Failure {
    Failure::new(
        wx_status::WX_ERR_BAD_STATE,
        "the block is sealed (read+execute); wx_block_writable makes it writable again",
    )
}

/// Makes a writable block of at least `len` bytes (its capacity: `len`
/// rounded up to whole pages of the system; 0 gives one page).
///
/// Ownership: `*out` is the caller's, freed by `wx_block_free`. `*out` is
/// NULL on failure.
///
/// Thread safety: a block is used by one thread at a time (the caller
/// synchronises); its sealed code may be called from any thread.
///
/// Errors: `WX_ERR_NULL_ARGUMENT` (out), `WX_ERR_INVALID_ARGUMENT` (a size
/// that overflows), `WX_ERR_DENIED`, `WX_ERR_NO_MEMORY`, `WX_ERR_OS`.
///
/// # Safety
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_new(len: usize, out: *mut *mut wx_block) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { set_out(out, std::ptr::null_mut()) };
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        let block = Box::new(wx_block {
            state: State::Writable(Block::new(len)?),
        });
        // SAFETY: checked not NULL; valid (the caller's contract).
        unsafe { out.write(Box::into_raw(block)) };
        Ok(())
    })
}

/// Appends `len` bytes at `bytes` to the block's code.
///
/// Errors: `WX_ERR_NULL_ARGUMENT` (b; bytes with `len` > 0),
/// `WX_ERR_OUT_OF_BOUNDS` past the capacity (nothing written),
/// `WX_ERR_BAD_STATE` when sealed.
///
/// # Safety
/// `b` is NULL or a live block; `bytes` is NULL or valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_write(
    b: *mut wx_block,
    bytes: *const c_void,
    len: usize,
) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let b = unsafe { block(b) }?;
        let State::Writable(block) = &mut b.state else {
            return Err(sealed_error());
        };
        // SAFETY: `bytes` is NULL or valid for `len` bytes (the caller's
        // contract), for this call.
        let src = unsafe { appended(bytes, len, "block", block.len(), block.capacity()) }?;
        let Some(src) = src else { return Ok(()) };
        block
            .write_all(src)
            .map_err(|e| Failure::new(wx_status::WX_ERR_OS, e))
    })
}

/// Sets the length of the block's code to `len` (at most its capacity):
/// shorter to rewrite the end, 0 to start over. Re-JIT: `wx_block_writable`,
/// `wx_block_set_len`, `wx_block_write`, `wx_block_exec`.
///
/// Errors: `WX_ERR_NULL_ARGUMENT`, `WX_ERR_OUT_OF_BOUNDS` past the
/// capacity, `WX_ERR_BAD_STATE` when sealed.
///
/// # Safety
/// `b` is NULL or a live block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_set_len(b: *mut wx_block, len: usize) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let b = unsafe { block(b) }?;
        let State::Writable(block) = &mut b.state else {
            return Err(sealed_error());
        };
        Ok(block.set_len(len)?)
    })
}

/// Seals the block: read+execute, never writable meanwhile. Sealing a
/// sealed block does nothing. On failure the block stays writable, its
/// bytes kept.
///
/// Errors: `WX_ERR_NULL_ARGUMENT`, `WX_ERR_DENIED`, `WX_ERR_OS`.
///
/// # Safety
/// `b` is NULL or a live block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_exec(b: *mut wx_block) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let b = unsafe { block(b) }?;
        match std::mem::replace(&mut b.state, State::Moving) {
            State::Writable(block) => match block.exec() {
                Ok(sealed) => b.state = State::Sealed(sealed),
                Err(e) => {
                    let (error, block) = e.into_parts();
                    b.state = State::Writable(block);
                    return Err(error.into());
                }
            },
            other => b.state = other,
        }
        Ok(())
    })
}

/// Makes a sealed block writable again at the same address, its code kept
/// (for re-JIT). Nothing may run its code meanwhile. A writable block: a
/// no-op. On failure the block stays sealed.
///
/// Errors: `WX_ERR_NULL_ARGUMENT`, `WX_ERR_DENIED`, `WX_ERR_OS`.
///
/// # Safety
/// `b` is NULL or a live block none of whose code is running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_writable(b: *mut wx_block) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let b = unsafe { block(b) }?;
        match std::mem::replace(&mut b.state, State::Moving) {
            State::Sealed(sealed) => match sealed.into_writable() {
                Ok(block) => b.state = State::Writable(block),
                Err(e) => {
                    let (error, sealed) = e.into_parts();
                    b.state = State::Sealed(sealed);
                    return Err(error.into());
                }
            },
            other => b.state = other,
        }
        Ok(())
    })
}

/// The executable address of byte `offset` of the block's code: NULL
/// unless the block is sealed and `offset` < its length. Cast it to the
/// function type of the code there. Valid until the block is made
/// writable or freed.
///
/// # Safety
/// `b` is NULL or a live block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_code(b: *const wx_block, offset: usize) -> *mut c_void {
    guard_value(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live block (the caller's contract).
        match unsafe { b.as_ref() } {
            Some(wx_block {
                state: State::Sealed(sealed),
            }) if offset < sealed.len() => sealed.as_ptr().wrapping_add(offset).cast_mut().cast(),
            _ => std::ptr::null_mut(),
        }
    })
}

/// The length of the block's code in bytes (0 for NULL).
///
/// # Safety
/// `b` is NULL or a live block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_len(b: *const wx_block) -> usize {
    // SAFETY: NULL or a live block (the caller's contract).
    match unsafe { b.as_ref() }.map(|b| &b.state) {
        Some(State::Writable(block)) => block.len(),
        Some(State::Sealed(sealed)) => sealed.len(),
        _ => 0,
    }
}

/// The block's capacity in bytes: its length rounded up to pages (0 for
/// NULL).
///
/// # Safety
/// `b` is NULL or a live block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_capacity(b: *const wx_block) -> usize {
    // SAFETY: NULL or a live block (the caller's contract).
    match unsafe { b.as_ref() }.map(|b| &b.state) {
        Some(State::Writable(block)) => block.capacity(),
        Some(State::Sealed(sealed)) => sealed.capacity(),
        _ => 0,
    }
}

/// Frees a block and its mapping. NULL: a no-op.
///
/// # Safety
/// `b` is NULL or a live block, not used afterwards, none of its code
/// running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_block_free(b: *mut wx_block) {
    // SAFETY: from `wx_block_new` (the caller's contract).
    unsafe { free_handle(b) }
}
