//! What runs between a thunk and its closure: panic handling at the ABI
//! boundary, and the guards that keep `FnMut` and `FnOnce` closures sound.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};

/// Calls `f`. Through an `-unwind` ABI a panic unwinds to the caller;
/// through any other a panic must not cross the boundary, so it aborts the
/// process with a message that names wxthunk.
#[inline(always)]
pub(crate) fn guarded<R>(unwind: bool, f: impl FnOnce() -> R) -> R {
    if unwind {
        return f();
    }
    // Dropped only if `f` unwinds: a guard costs nothing on the normal path
    // (unlike `catch_unwind`, which moves the closure and result through
    // memory).
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            abort(
                "a closure called through a non-unwinding thunk (e.g. extern \"C\") panicked; \
                 use an \"-unwind\" ABI to let panics reach the caller",
            );
        }
    }
    let guard = AbortOnUnwind;
    let r = f();
    std::mem::forget(guard);
    r
}

#[cold]
fn abort(why: &str) -> ! {
    eprintln!("wxthunk: {why}; aborting");
    std::process::abort()
}

/// A misuse the guards caught: a panic for `-unwind` thunks, else an abort.
#[cold]
fn misuse(unwind: bool, what: &str) -> ! {
    if unwind {
        panic!("wxthunk: {what}");
    }
    abort(what)
}

/// The context of an `FnMut` thunk: the closure behind a flag that makes
/// each call exclusive. A second call while one runs (re-entrantly, or from
/// another thread) is caught instead of creating a second `&mut`.
#[doc(hidden)]
pub struct MutCtx<C> {
    busy: AtomicBool,
    f: UnsafeCell<C>,
}

impl<C> MutCtx<C> {
    pub(crate) fn new(f: C) -> Self {
        MutCtx {
            busy: AtomicBool::new(false),
            f: UnsafeCell::new(f),
        }
    }
}

#[inline(always)]
pub(crate) fn call_mut<C, R>(ctx: &MutCtx<C>, unwind: bool, call: impl FnOnce(&mut C) -> R) -> R {
    if ctx.busy.swap(true, Ordering::Acquire) {
        misuse(
            unwind,
            "an FnMut thunk was called while a call to it was still running (re-entrantly or from another thread)",
        );
    }
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }
    let _done = Done(&ctx.busy);
    // SAFETY: the flag was clear and is now set by this call, so no other
    // reference to the closure exists until `_done` clears it.
    let f = unsafe { &mut *ctx.f.get() };
    guarded(unwind, || call(f))
}

/// The context of an `FnOnce` thunk: the closure, taken by the first call.
#[doc(hidden)]
pub struct OnceCtx<C> {
    taken: AtomicBool,
    f: UnsafeCell<ManuallyDrop<C>>,
}

impl<C> OnceCtx<C> {
    pub(crate) fn new(f: C) -> Self {
        OnceCtx {
            taken: AtomicBool::new(false),
            f: UnsafeCell::new(ManuallyDrop::new(f)),
        }
    }
}

impl<C> Drop for OnceCtx<C> {
    fn drop(&mut self) {
        if !*self.taken.get_mut() {
            // SAFETY: never taken, so still initialised; dropped once here.
            unsafe { ManuallyDrop::drop(self.f.get_mut()) };
        }
    }
}

#[inline(always)]
pub(crate) fn call_once<C, R>(ctx: &OnceCtx<C>, unwind: bool, call: impl FnOnce(C) -> R) -> R {
    if ctx.taken.swap(true, Ordering::AcqRel) {
        misuse(unwind, "an FnOnce thunk was called a second time");
    }
    // SAFETY: the flag was clear, so the closure is still there, and this
    // call is the only one that will ever take it.
    let f = unsafe { ManuallyDrop::take(&mut *ctx.f.get()) };
    guarded(unwind, || call(f))
}
