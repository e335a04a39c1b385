//! The closure traits: which closures can back a thunk of a given
//! fn-pointer type, and the monomorphized `entry` function through which
//! the thunk calls each one.
//!
//! For a signature `extern "ABI" fn(A1, .., An) -> R`, a closure's entry is
//! `extern "ABI" fn(a1: A1, .., an: An, ctx: *const Ctx) -> R`: the
//! signature plus one trailing pointer to the closure's context. The thunk
//! code (see `arch`) only puts `ctx` where that trailing argument goes.
//! Where the placement is a float register (System V signatures that use
//! all six integer registers), the trailing parameter is `ctx: f64`
//! holding the pointer's bits, so that the ABI passes it in that register.

use crate::abi::ThunkSig;

mod sealed {
    /// Keeps the closure traits closed: implemented (by this crate) for
    /// every closure type whose call matches `F`, and for nothing else.
    pub trait Closure<F> {}
}

/// A closure that can back a thunk of type `F` through `Fn`: implemented
/// for every `Fn(A1, .., An) -> R` matching `F`. Sealed: only this crate
/// implements it (its `entry` is what a thunk jumps to).
///
/// # Safety
///
/// Implemented by this crate only.
pub unsafe trait ThunkFn<F: ThunkSig>: sealed::Closure<F> {
    #[doc(hidden)]
    fn entry() -> *const ();

    /// For a zero-sized closure: a function of exactly `F`'s signature that
    /// calls the closure without a context (see `bare` in the impls).
    #[doc(hidden)]
    fn bare() -> *const ();
}

/// As [`ThunkFn`], through `FnMut`.
///
/// # Safety
///
/// Implemented by this crate only.
pub unsafe trait ThunkFnMut<F: ThunkSig>: sealed::Closure<F> {
    #[doc(hidden)]
    fn entry() -> *const ();
}

/// As [`ThunkFn`], through `FnOnce`.
///
/// # Safety
///
/// Implemented by this crate only.
pub unsafe trait ThunkFnOnce<F: ThunkSig>: sealed::Closure<F> {
    #[doc(hidden)]
    fn entry() -> *const ();
}

/// `Self` (a thunk signature) is the signature of the closure `C` called
/// through `Fn`. The constructors taking `Fn` closures require it beside
/// [`ThunkFn`]: the compiler picks this trait's one implementation from the
/// signature, which it knows, and so learns the closure's parameter types
/// before it checks the closure's body. That is what lets
/// `Thunk::<unsafe extern "C" fn(&i32, &mut i64) -> i32>::new(|a, out| ..)`
/// leave `a` and `out` unannotated. Generic code that passes a closure `C`
/// on to such a constructor names it too:
/// `where F: ThunkSig + ClosureSig<C>, C: ThunkFn<F> + Send + Sync`.
pub trait ClosureSig<C> {}

/// As [`ClosureSig`], through `FnMut` (for the `FnMut` constructors).
pub trait ClosureSigMut<C> {}

/// As [`ClosureSig`], through `FnOnce` (for the `FnOnce` constructors).
pub trait ClosureSigOnce<C> {}

/// Whether thunks of `F` pass their context in a float register
/// (`Placement::Float`), so that the entry's trailing parameter is an
/// `f64` holding the pointer's bits. A constant per signature: callers
/// evaluate it in a `const` block, as the placement loop (which walks
/// struct eightbytes) is not folded at run time otherwise (80 instructions
/// per thunk creation, measured).
#[inline(always)]
const fn float_context<F: ThunkSig>() -> bool {
    matches!(
        crate::arch::placement(F::CONV, F::CLASSES),
        Some(crate::arch::Placement::Float(_))
    )
}

/// The context pointer whose bits a float-register thunk passed as `ctx`
/// (its address was exposed when the thunk's code was made from it).
#[inline(always)]
fn from_bits<T>(ctx: f64) -> *const T {
    std::ptr::with_exposed_provenance(ctx.to_bits() as usize)
}

/// Implements the three closure traits for every closure type matching one
/// fn-pointer type (a callback of `abi::for_each_signature!`).
macro_rules! impl_closure_traits {
    ($abi:literal, $conv:expr, $unwind:literal, $ty:ty;
        $(($A:ident $a:ident [$T:ty] [$K:ty] [$($bound:tt)*]))*) => {
        // Every closure type that can be called with `$ty`'s arguments.
        // `fn(&A) -> R` and `fn(A) -> R` are distinct types, but coherence
        // reports their impls with the `coherence_leak_check` lint
        // (rust-lang/rust#56105), which the compiler keeps accepting for this
        // very pattern (its test `coherence-wasm-bindgen.rs`).
        #[allow(coherence_leak_check)]
        impl<C, R: $crate::abi::ThunkRet, $($A: $($bound)*),*> sealed::Closure<$ty> for C
        where
            C: FnOnce($($T),*) -> R,
        {
        }

        // The signature side, for the compiler's closure inference (a
        // closure kind each: a bound says which kind a closure must be).
        #[allow(coherence_leak_check)]
        impl<C, R: $crate::abi::ThunkRet, $($A: $($bound)*),*> ClosureSig<C> for $ty
        where
            C: Fn($($T),*) -> R,
        {
        }
        #[allow(coherence_leak_check)]
        impl<C, R: $crate::abi::ThunkRet, $($A: $($bound)*),*> ClosureSigMut<C> for $ty
        where
            C: FnMut($($T),*) -> R,
        {
        }
        #[allow(coherence_leak_check)]
        impl<C, R: $crate::abi::ThunkRet, $($A: $($bound)*),*> ClosureSigOnce<C> for $ty
        where
            C: FnOnce($($T),*) -> R,
        {
        }

        // SAFETY: `entry` is an `extern $abi` function taking the
        // arguments of `$ty` followed by a pointer to the closure.
        #[allow(coherence_leak_check)]
        unsafe impl<C, R: $crate::abi::ThunkRet, $($A: $($bound)*),*> ThunkFn<$ty> for C
        where
            C: Fn($($T),*) -> R,
        {
            fn entry() -> *const () {
                #[allow(clippy::too_many_arguments)]
                extern $abi fn entry<C: Fn($($T),*) -> R, R, $($A),*>($($a: $T,)* ctx: *const C) -> R {
                    // SAFETY: the thunk passes a pointer to its closure,
                    // which lives (and is shared, `Sync`) while the thunk
                    // may be called.
                    let f = unsafe { &*ctx };
                    $crate::thunk::call::guarded($unwind, || f($($a),*))
                }
                #[allow(clippy::too_many_arguments)]
                extern $abi fn entry_float<C: Fn($($T),*) -> R, R, $($A),*>($($a: $T,)* ctx: f64) -> R {
                    // SAFETY: as in `entry`: the thunk passes the pointer's
                    // bits in the float register after the arguments
                    // (`Placement::Float`), its address exposed when the
                    // code was made.
                    let f = unsafe { &*from_bits::<C>(ctx) };
                    $crate::thunk::call::guarded($unwind, || f($($a),*))
                }
                if const { float_context::<$ty>() } {
                    entry_float::<C, R, $($A),*> as extern $abi fn($($T,)* f64) -> R as *const ()
                } else {
                    entry::<C, R, $($A),*> as extern $abi fn($($T,)* *const C) -> R as *const ()
                }
            }

            fn bare() -> *const () {
                /// The thunk of a zero-sized closure: `F`'s own signature,
                /// no context. A zero-sized value has no bytes, so a
                /// well-aligned dangling reference is a reference to it;
                /// the closure itself lives in the `Thunk` (which drops it),
                /// and is only ever shared (`Fn`, `Sync`).
                #[allow(clippy::too_many_arguments)]
                extern $abi fn bare<C: Fn($($T),*) -> R, R, $($A),*>($($a: $T),*) -> R {
                    assert!(::core::mem::size_of::<C>() == 0, "wxthunk: bare entry of a sized closure");
                    // SAFETY: `C` is zero-sized (checked above, and by the
                    // only caller of `bare`), so the dangling, aligned
                    // pointer is valid for its (empty) reads; the closure
                    // it stands for is alive while the thunk may be called.
                    let f: &C = unsafe { ::core::ptr::NonNull::<C>::dangling().as_ref() };
                    $crate::thunk::call::guarded($unwind, || f($($a),*))
                }
                bare::<C, R, $($A),*> as extern $abi fn($($T),*) -> R as *const ()
            }
        }

        // SAFETY: as above, with the closure behind a re-entrancy guard.
        #[allow(coherence_leak_check)]
        unsafe impl<C, R: $crate::abi::ThunkRet, $($A: $($bound)*),*> ThunkFnMut<$ty> for C
        where
            C: FnMut($($T),*) -> R,
        {
            fn entry() -> *const () {
                #[allow(clippy::too_many_arguments)]
                extern $abi fn entry<C: FnMut($($T),*) -> R, R, $($A),*>(
                    $($a: $T,)* ctx: *const $crate::thunk::call::MutCtx<C>,
                ) -> R {
                    // SAFETY: the thunk passes a pointer to its context,
                    // made by `Box::into_raw` and live while a call may
                    // start.
                    unsafe {
                        $crate::thunk::call::call_mut(ctx.cast_mut(), $unwind, |f| f($($a),*))
                    }
                }
                #[allow(clippy::too_many_arguments)]
                extern $abi fn entry_float<C: FnMut($($T),*) -> R, R, $($A),*>(
                    $($a: $T,)* ctx: f64,
                ) -> R {
                    let ctx = from_bits::<$crate::thunk::call::MutCtx<C>>(ctx);
                    // SAFETY: as in `entry`, the pointer's bits passed in
                    // the float register after the arguments.
                    unsafe {
                        $crate::thunk::call::call_mut(ctx.cast_mut(), $unwind, |f| f($($a),*))
                    }
                }
                if const { float_context::<$ty>() } {
                    entry_float::<C, R, $($A),*> as extern $abi fn($($T,)* f64) -> R as *const ()
                } else {
                    entry::<C, R, $($A),*> as extern $abi fn($($T,)* *const $crate::thunk::call::MutCtx<C>) -> R as *const ()
                }
            }
        }

        // SAFETY: as above, with the closure behind a called-once flag.
        #[allow(coherence_leak_check)]
        unsafe impl<C, R: $crate::abi::ThunkRet, $($A: $($bound)*),*> ThunkFnOnce<$ty> for C
        where
            C: FnOnce($($T),*) -> R,
        {
            fn entry() -> *const () {
                #[allow(clippy::too_many_arguments)]
                extern $abi fn entry<C: FnOnce($($T),*) -> R, R, $($A),*>(
                    $($a: $T,)* ctx: *const $crate::thunk::call::OnceCtx<C>,
                ) -> R {
                    // SAFETY: the thunk passes a pointer to its context,
                    // which lives while the thunk may be called.
                    let ctx = unsafe { &*ctx };
                    $crate::thunk::call::call_once(ctx, $unwind, |f| f($($a),*))
                }
                #[allow(clippy::too_many_arguments)]
                extern $abi fn entry_float<C: FnOnce($($T),*) -> R, R, $($A),*>(
                    $($a: $T,)* ctx: f64,
                ) -> R {
                    // SAFETY: as in `entry`, the pointer's bits passed in
                    // the float register after the arguments.
                    let ctx = unsafe { &*from_bits::<$crate::thunk::call::OnceCtx<C>>(ctx) };
                    $crate::thunk::call::call_once(ctx, $unwind, |f| f($($a),*))
                }
                if const { float_context::<$ty>() } {
                    entry_float::<C, R, $($A),*> as extern $abi fn($($T,)* f64) -> R as *const ()
                } else {
                    entry::<C, R, $($A),*> as extern $abi fn($($T,)* *const $crate::thunk::call::OnceCtx<C>) -> R as *const ()
                }
            }
        }
    };
}

crate::abi::for_each_signature!(impl_closure_traits);
