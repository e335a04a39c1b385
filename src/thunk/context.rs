//! [`Context`]: a boxed thunk closure (or its guarded `FnMut`/`FnOnce`
//! context) with its type erased: what the code of a `SLOW` thunk
//! (`handle.rs`) passes to the closure's entry function. Small `Fn`
//! closures live inline in data slots instead (`handle.rs`).

use std::ptr::NonNull;

use super::call::MutCtx;

/// A closure (or its guarded context) with its type erased.
pub(super) struct Context {
    pub(super) ptr: NonNull<()>,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Nothing to do when dropped: a zero-sized value that needs no drop
    /// (which a zero-sized `Box` holds without allocating), or one freed
    /// with the box that holds the thunk (`handle::WithClosure`).
    Trivial,
    /// In a `Box`; this frees it.
    Boxed(unsafe fn(NonNull<()>)),
}

// SAFETY: a `Context` moves or is shared across threads only inside a
// handle (`Thunk`, `ThunkPage`, `SealedThunkPage`) that borrows its heap,
// and so is `Send`/`Sync` only when the heap's lock is `Sync`. The
// constructors of such heaps ask `SendsClosure`/`SharesClosure` of the
// lock, which for those locks means the closure is `Send` (and, for `Fn`,
// `Sync`); `FnMut` and `FnOnce` contexts serialise calls themselves with an
// atomic flag. A closure that is neither (an `Rc`) is only accepted by a
// `NoLock` heap, whose handles are neither `Send` nor `Sync`, so its
// context is dropped on the thread that made it (and called there, by
// `Thunk::as_fn`'s contract).
unsafe impl Send for Context {}
// SAFETY: as above.
unsafe impl Sync for Context {}

impl Context {
    pub(super) fn boxed<T>(value: T) -> Self {
        unsafe fn drop_box<T>(ptr: NonNull<()>) {
            // SAFETY: `ptr` came from `Box::leak` of a `Box<T>` in `boxed`
            // and is dropped once, by `Context::drop`.
            drop(unsafe { Box::from_raw(ptr.cast::<T>().as_ptr()) });
        }
        // A zero-sized `Box` allocates nothing; if dropping `T` does
        // nothing either, the context costs nothing at all.
        let trivial = size_of::<T>() == 0 && !std::mem::needs_drop::<T>();
        Context {
            ptr: NonNull::from(Box::leak(Box::new(value))).cast(),
            kind: if trivial {
                Kind::Trivial
            } else {
                Kind::Boxed(drop_box::<T>)
            },
        }
    }

    /// The context of a value someone else frees (after the code that
    /// passes it): nothing to do when dropped.
    pub(super) fn trivial(ptr: NonNull<()>) -> Self {
        Context {
            ptr,
            kind: Kind::Trivial,
        }
    }

    /// The context of an `FnMut` thunk, which a drop during one of its
    /// calls leaves for that call to free.
    pub(super) fn boxed_mut<C>(value: MutCtx<C>) -> Self {
        unsafe fn release<C>(ptr: NonNull<()>) {
            // SAFETY: `ptr` came from `Box::leak` of a `Box<MutCtx<C>>` in
            // `boxed_mut`; `Context::drop` calls this once, after the code
            // that leads to it was freed.
            unsafe { MutCtx::release(ptr.cast::<MutCtx<C>>().as_ptr()) }
        }
        Context {
            ptr: NonNull::from(Box::leak(Box::new(value))).cast(),
            kind: Kind::Boxed(release::<C>),
        }
    }
}

impl Drop for Context {
    #[inline]
    fn drop(&mut self) {
        match self.kind {
            Kind::Trivial => {}
            // SAFETY: `drop` matches the type `ptr` was made from; called
            // once.
            Kind::Boxed(drop) => unsafe { drop(self.ptr) },
        }
    }
}
