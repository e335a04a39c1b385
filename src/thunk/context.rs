//! [`Context`]: a thunk's closure (or its guarded `FnMut`/`FnOnce`
//! context), boxed, with its type erased; what the thunk's code passes to
//! the closure's entry function.

use std::ptr::NonNull;

use super::call::MutCtx;

/// A closure (or its guarded context) on the heap, with its type erased.
pub(super) struct Context {
    pub(super) ptr: NonNull<()>,
    /// `None` when there is nothing to do: a zero-sized value that needs no
    /// drop (and so no allocation either).
    drop: Option<unsafe fn(NonNull<()>)>,
}

// SAFETY: the constructors only build a `Context` from closures that may be
// sent to another thread (`Send`) and, for `Fn`, shared (`Sync`); `FnMut`
// and `FnOnce` contexts serialise access themselves with an atomic flag.
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
            drop: (!trivial).then_some(drop_box::<T> as unsafe fn(NonNull<()>)),
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
            drop: Some(release::<C>),
        }
    }
}

impl Drop for Context {
    #[inline]
    fn drop(&mut self) {
        if let Some(drop) = self.drop {
            // SAFETY: `drop` matches the type `ptr` was made from; called
            // once.
            unsafe { drop(self.ptr) }
        }
    }
}
