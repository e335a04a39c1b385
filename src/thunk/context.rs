//! [`Context`]: a thunk's closure (or its guarded `FnMut`/`FnOnce`
//! context) with its type erased: boxed, or for a small `Fn` closure inline
//! in the private data slot of its thunk's granule; what the thunk's code
//! passes to the closure's entry function.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::call::MutCtx;
use crate::data_slot::DATA_SLOT;

/// A closure (or its guarded context) with its type erased.
pub(super) struct Context {
    pub(super) ptr: NonNull<()>,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Nothing to do when dropped: a zero-sized value that needs no drop
    /// (which a zero-sized `Box` holds without allocating), or an inline
    /// value that needs none.
    Trivial,
    /// In a `Box`; this frees it.
    Boxed(unsafe fn(NonNull<()>)),
    /// Inline in a data slot, which goes with the thunk's code: the thunk
    /// moves the value out ([`Context::move_out_inline`]) before its code
    /// is freed, and this drops the moved value.
    Inline(unsafe fn(*mut u8)),
}

// SAFETY: the constructors only build a `Context` from closures that may be
// sent to another thread (`Send`) and, for `Fn`, shared (`Sync`); `FnMut`
// and `FnOnce` contexts serialise access themselves with an atomic flag.
unsafe impl Send for Context {}
// SAFETY: as above.
unsafe impl Sync for Context {}

/// An inline closure moved out of its data slot, dropped with this.
pub(super) struct MovedOut {
    bytes: Slot,
    drop: unsafe fn(*mut u8),
}

/// Room for one inline value, aligned as a data slot is.
#[repr(C, align(16))]
struct Slot([MaybeUninit<u8>; DATA_SLOT]);

const _: () = assert!(std::mem::align_of::<Slot>() == DATA_SLOT);

impl Drop for MovedOut {
    fn drop(&mut self) {
        // SAFETY: `bytes` holds the value moved out of the data slot (a
        // bitwise move), of the type `drop` was made for; dropped once.
        unsafe { (self.drop)(self.bytes.0.as_mut_ptr().cast()) }
    }
}

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

    /// The context of a value written into the data slot at `slot`.
    ///
    /// # Safety
    /// `slot` holds a `T` (which fits a slot) and stays valid until the
    /// owner of the context moves it out with
    /// [`move_out_inline`](Self::move_out_inline).
    pub(super) unsafe fn inline<T>(slot: NonNull<u8>) -> Self {
        // A constant condition (folded away); the only caller checks it the
        // same way before choosing this path.
        assert!(size_of::<T>() <= DATA_SLOT && align_of::<T>() <= DATA_SLOT);
        unsafe fn drop_moved<T>(ptr: *mut u8) {
            // SAFETY: `ptr` holds a `T` moved out of its slot, dropped once.
            unsafe { std::ptr::drop_in_place(ptr.cast::<T>()) }
        }
        Context {
            ptr: slot.cast(),
            kind: if std::mem::needs_drop::<T>() {
                Kind::Inline(drop_moved::<T>)
            } else {
                Kind::Trivial
            },
        }
    }

    /// Moves an inline value out of its data slot (before the slot goes
    /// with the thunk's code); the result drops it. `None` for every other
    /// context, which drops where it is.
    #[inline]
    pub(super) fn move_out_inline(&mut self) -> Option<MovedOut> {
        let Kind::Inline(drop) = self.kind else {
            return None;
        };
        let mut bytes = Slot([MaybeUninit::uninit(); DATA_SLOT]);
        // SAFETY: the slot holds the value (see `inline`), at most
        // `DATA_SLOT` bytes; copying them is a move, after which the slot
        // is not read again (the kind becomes trivial).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().cast::<u8>(),
                bytes.0.as_mut_ptr().cast::<u8>(),
                DATA_SLOT,
            )
        };
        self.kind = Kind::Trivial;
        Some(MovedOut { bytes, drop })
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
            // The owner moves an inline value out before its slot goes; one
            // that did not (a bug) leaks it rather than touch a slot that
            // may be another thunk's now.
            Kind::Inline(_) => debug_assert!(false, "inline context dropped in place"),
        }
    }
}
