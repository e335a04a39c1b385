//! [`RefThunk`], what [`ref_thunk!`](crate::ref_thunk) makes (the macro is
//! in `lib.rs`, with the public names its expansion uses): thunks for any
//! signature with reference arguments, beyond the shapes the traits cover
//! (references in the first two of up to four arguments).
//!
//! A fn type with a reference argument is higher-ranked (`for<'a> fn(&'a
//! T)`), a type of its own for each shape, and the traits cannot name every
//! shape at once. The macro makes the thunk with each reference written as
//! the thin pointer it is (`&T` as `*const T`, `&mut T` as `*mut T`: the
//! same ABI), turns the pointers back into references inside the closure,
//! and hands out the pointer as the type with references, in a
//! [`RefThunk`].

use std::marker::PhantomData;

use lock_api::RawMutex;

use super::Thunk;
use crate::abi::{FnPtr, ThunkSig};
use crate::heap::DefaultLock;

/// A thunk made by [`ref_thunk!`](crate::ref_thunk): a [`Thunk`] of `F`
/// (the signature with thin pointers) whose pointer is handed out as `H`
/// (the same signature with references).
pub struct RefThunk<'a, H: Copy, F: ThunkSig, L: RawMutex = DefaultLock> {
    thunk: Thunk<'a, F, L>,
    as_h: PhantomData<H>,
}

impl<'a, H: Copy, F: ThunkSig, L: RawMutex> RefThunk<'a, H, F, L> {
    /// Hands out `thunk`'s pointer as `H`. For [`ref_thunk!`](crate::ref_thunk).
    ///
    /// # Safety
    ///
    /// - `H` is an `unsafe` fn-pointer type of `F`'s ABI, arguments and
    ///   return type, except that some thin-pointer arguments of `F`
    ///   (`*const T`, `*mut T`) are references in `H` (`&T`, `&mut T`).
    /// - The closure of `thunk` treats those pointers as the references a
    ///   caller through `H` passes.
    #[doc(hidden)]
    pub unsafe fn new(thunk: Thunk<'a, F, L>) -> Self {
        const { assert!(size_of::<H>() == size_of::<F::Unsafe>()) };
        RefThunk {
            thunk,
            as_h: PhantomData,
        }
    }

    /// The thunk's pointer, as the signature with references. Calling it is
    /// only sound while `self` lives (as for [`Thunk::as_fn`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let k = std::hint::black_box(2);
    /// // A reference in the third place: a shape only `ref_thunk!` takes.
    /// let scaled = wxthunk::ref_thunk!(
    ///     unsafe extern "C" fn(a: u32, b: u32, out: &mut u32) => *out = (a + b) * k
    /// )?;
    /// let mut out = 0;
    /// // SAFETY: the thunk is alive.
    /// unsafe { (scaled.as_fn())(20, 1, &mut out) };
    /// assert_eq!(out, 42);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn as_fn(&self) -> H {
        let f = self.thunk.as_fn();
        // SAFETY: `new`'s contract: `H` is `F::Unsafe` with some thin
        // pointers written as references, one machine word (checked in
        // `new`) that calls the same code with the same ABI.
        unsafe { std::mem::transmute_copy::<F::Unsafe, H>(&f) }
    }

    /// The thunk, typed with thin pointers.
    pub fn thunk(&self) -> &Thunk<'a, F, L> {
        &self.thunk
    }
}

impl<H: Copy, F: ThunkSig, L: RawMutex> std::fmt::Debug for RefThunk<'_, H, F, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefThunk")
            .field("fn_ptr", &self.thunk.as_fn().addr())
            .field("as", &std::any::type_name::<H>())
            .finish()
    }
}
