//! [`FnPtr`]: the function-pointer types that code in executable memory can
//! be called through.

use crate::error::{Error, Result};

mod sealed {
    /// Keeps [`FnPtr`](super::FnPtr) closed: only this crate implements it.
    pub trait Sealed {}
}

pub(crate) use sealed::Sealed;

/// A bare function-pointer type: `extern "ABI" fn(A1, ..., An) -> R`, safe or
/// `unsafe`, with 0 to 16 arguments.
///
/// Implemented for the ABIs `"C"`, `"system"` and, on x86_64, `"sysv64"` and
/// `"win64"`, each also in its `-unwind` form. The trait is sealed: every
/// implementor is pointer-sized and can be made from a code address, which is
/// what [`ExecBlock::func`](crate::ExecBlock::func) relies on.
///
/// ```compile_fail
/// // A Rust-ABI fn pointer is not an `FnPtr`: its convention is unspecified.
/// fn takes<F: wxthunk::FnPtr>() {}
/// takes::<fn(u32) -> u32>();
/// ```
///
/// # Safety
///
/// Implementors must be pointer-sized, `Copy` and valid for every non-null
/// code address; only this crate implements the trait.
#[diagnostic::on_unimplemented(
    message = "wxthunk: `{Self}` is not an `extern` fn pointer type",
    label = "not an `FnPtr`",
    note = "wxthunk calls and makes fn pointers of the ABIs \"C\", \"system\", \"sysv64\" and \
            \"win64\" (and their `-unwind` forms), safe or `unsafe`, of up to 16 arguments: a \
            Rust-ABI `fn(..)` has no stable calling convention"
)]
pub unsafe trait FnPtr: Copy + Send + Sync + Sealed {
    /// The calling convention, as written in the type (e.g. `"C-unwind"`).
    const ABI: &'static str;

    /// The address the pointer calls.
    fn addr(self) -> *const ();

    /// A pointer that calls `addr`.
    ///
    /// # Safety
    ///
    /// `addr` must be non-null. Calling the result is only sound if `addr` is
    /// the entry of code that follows this type's ABI and signature and stays
    /// executable for as long as it may be called.
    unsafe fn from_addr(addr: *const ()) -> Self;
}

/// A function pointer of type `F` to offset `offset` of `len` bytes of code
/// at `base`: the bounds check behind every `func` method.
///
/// # Safety
///
/// `base..base+len` must be mapped; the caller of the returned pointer
/// vouches for the code at `offset` (see [`FnPtr::from_addr`]).
pub(crate) unsafe fn func_at<F: FnPtr>(base: *const u8, len: usize, offset: usize) -> Result<F> {
    if offset >= len {
        return Err(Error::OutOfBounds { offset, len });
    }
    // SAFETY: `offset < len`, so the address is inside the mapping and not
    // null; the caller vouches for the code there.
    Ok(unsafe { F::from_addr(base.add(offset).cast()) })
}

/// Implements [`FnPtr`] for one fn-pointer type (a callback of
/// [`for_each_signature!`](super::for_each_signature)).
macro_rules! impl_fn_ptr {
    ($abi:literal, $conv:expr, $unwind:literal, $ty:ty;
        $(($A:ident $a:ident [$T:ty] [$K:ty] [$($bound:tt)*]))*) => {
        // `fn(&A) -> R` and `fn(A) -> R` are distinct types, but coherence
        // reports their impls with the `coherence_leak_check` lint
        // (rust-lang/rust#56105), which the compiler keeps accepting for this
        // very pattern (its test `coherence-wasm-bindgen.rs`).
        #[allow(coherence_leak_check)]
        impl<R, $($A),*> $crate::abi::fn_ptr::Sealed for $ty {}

        // SAFETY: every fn-pointer type is pointer-sized, `Copy`, and valid
        // for any non-null address.
        #[allow(coherence_leak_check)]
        unsafe impl<R, $($A),*> $crate::abi::fn_ptr::FnPtr for $ty {
            const ABI: &'static str = $abi;

            #[inline]
            fn addr(self) -> *const () {
                self as *const ()
            }

            #[inline]
            unsafe fn from_addr(addr: *const ()) -> Self {
                const {
                    assert!(::core::mem::size_of::<Self>() == ::core::mem::size_of::<*const ()>())
                };
                debug_assert!(!addr.is_null());
                // SAFETY: both types are pointer-sized (checked above) and a
                // fn pointer may hold any non-null address; the caller
                // vouches for what is there.
                unsafe { ::core::mem::transmute_copy::<*const (), Self>(&addr) }
            }
        }
    };
}

super::for_each_signature!(impl_fn_ptr);
