//! What runs between a thunk and its closure: panic handling at the ABI
//! boundary, and the guards that keep `FnMut` and `FnOnce` closures sound.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

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

/// The context of an `FnMut` thunk: the closure behind a state word that
/// makes each call exclusive and lets the thunk be dropped during its own
/// call.
///
/// - A second call while one runs (re-entrantly, or from another thread)
///   finds `BUSY` set and is caught instead of creating a second `&mut`.
/// - Dropping the thunk while a call runs (the closure dropping its own
///   thunk, directly or through shared state) sets `DROPPED` and leaves the
///   context alone; the running call frees it when it returns. Nothing is
///   freed under a running call.
///
/// The call path costs one compare-and-swap to enter and one swap to
/// leave: both sides change the state with a single read-modify-write, so
/// a drop from another thread during a call is never lost.
#[doc(hidden)]
pub struct MutCtx<C> {
    state: AtomicU8,
    f: UnsafeCell<C>,
}

/// A call is running.
const BUSY: u8 = 1;
/// The thunk was dropped; whoever sees this last frees the context.
const DROPPED: u8 = 2;

impl<C> MutCtx<C> {
    pub(crate) fn new(f: C) -> Self {
        MutCtx {
            state: AtomicU8::new(0),
            f: UnsafeCell::new(f),
        }
    }

    /// Drops the context made by `Box::into_raw` at `ptr` now, or, if a
    /// call is running, marks it so that the call frees it when it returns.
    ///
    /// # Safety
    ///
    /// `ptr` comes from `Box::into_raw(Box<MutCtx<C>>)`, and this is called
    /// once, by the thunk's drop, after the thunk's code stopped leading to
    /// the context (no call can *start* afterwards).
    pub(crate) unsafe fn release(ptr: *mut MutCtx<C>) {
        // SAFETY: the box is live: only this call or a running call (which
        // sees `DROPPED` only after this store) frees it.
        let prev = unsafe { &(*ptr).state }.fetch_or(DROPPED, Ordering::AcqRel);
        if prev & BUSY == 0 {
            // SAFETY: no call runs and none can start: ours to free.
            drop(unsafe { Box::from_raw(ptr) });
        }
    }
}

/// Leaves a call of an `FnMut` thunk (also when the closure unwinds): clears
/// `BUSY`, or frees the context if the thunk was dropped during the call.
struct Leave<C>(*mut MutCtx<C>);

impl<C> Drop for Leave<C> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the context stays allocated while `BUSY` is set: `release`
        // leaves it to us then.
        let state = unsafe { &(*self.0).state };
        // One read-modify-write: a drop (`release`'s `fetch_or`) lands
        // either before it, and we see `DROPPED` and free, or after it, and
        // `release` sees `BUSY` clear and frees. A load then a store would
        // lose a drop landing between the two and leak the closure.
        if state.swap(0, Ordering::AcqRel) & DROPPED != 0 {
            // SAFETY: `release` saw `BUSY` and left the context to us; the
            // closure's `&mut` ended with its call.
            drop(unsafe { Box::from_raw(self.0) });
        }
    }
}

/// Calls the closure of the `FnMut` context at `ctx`.
///
/// # Safety
///
/// `ctx` points to a live context made by `Box::into_raw` (the thunk's
/// caller keeps the thunk alive until the call starts).
#[inline(always)]
pub(crate) unsafe fn call_mut<C, R>(
    ctx: *mut MutCtx<C>,
    unwind: bool,
    call: impl FnOnce(&mut C) -> R,
) -> R {
    // A raw pointer, not a reference: the context may be freed before this
    // function returns (in `Leave`), which a reference argument forbids.
    // SAFETY: live, as the caller guarantees.
    let state = unsafe { &(*ctx).state };
    if state
        .compare_exchange(0, BUSY, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        misuse(
            unwind,
            "an FnMut thunk was called while a call to it was still running (re-entrantly or from another thread)",
        );
    }
    let _leave = Leave(ctx);
    // SAFETY: `BUSY` was clear and is now set by this call, so no other
    // reference to the closure exists until `_leave` clears it, and the
    // context is not freed before then.
    let f = unsafe { &mut *(*ctx).f.get() };
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
