//! The heap's thunk constructors ([`Heap::thunk`], [`Heap::thunk_mut`],
//! [`Heap::thunk_once`]): which layout a closure gets, and the perf-map
//! line of each new thunk. ([`Thunk::new`] and its forms stay beside the
//! type, so the compiler names them `Thunk::new` in its messages.)

use lock_api::RawMutex;

use super::call::{MutCtx, OnceCtx};
use super::context::Context;
use super::handle;
use super::{ClosureSig, ClosureSigMut, ClosureSigOnce, Thunk, ThunkFn, ThunkFnMut, ThunkFnOnce};
use crate::abi::ThunkSig;
use crate::arch::Placement;
use crate::error::Result;
use crate::heap::{Heap, SendsClosure, SharesClosure, ThunkSlots};

impl<L: RawMutex> Heap<L> {
    /// A thunk for an `Fn` closure, with its code in this heap.
    ///
    /// On a heap shared between threads the closure must be `Send + Sync`
    /// (C may call from many threads at once); for one that is not `Sync`
    /// (it holds a `Cell`, a `RefCell`), use [`thunk_mut`](Heap::thunk_mut).
    /// On a heap of one thread ([`NoLock`](crate::NoLock): `Heap::unlocked`,
    /// `Heap::thread_local`) it need be neither: see
    /// [`SharesClosure`](crate::SharesClosure).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`](crate::Error::Unsupported) on an architecture without a thunk code
    /// generator; otherwise as [`Heap::alloc`].
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::builder().region_size(64 << 10).build()?;
    /// let scale = std::hint::black_box(3.0);
    /// let f = heap.thunk::<unsafe extern "C" fn(f64) -> f64, _>(move |x| x * scale)?;
    /// // SAFETY: the thunk is alive.
    /// assert_eq!(unsafe { (f.as_fn())(2.0) }, 6.0);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    #[inline(always)]
    pub fn thunk<'a, F, C>(&'a self, closure: C) -> Result<Thunk<'a, F, L>>
    where
        F: ThunkSig,
        C: ThunkFn<F> + 'a,
        F: ClosureSig<C>,
        L: SharesClosure<C>,
    {
        // One relaxed load (perf's map, debug mode); the path that serves
        // them is out of line, so the usual one is built straight into the
        // caller's result.
        if crate::creation_hooks::any() {
            return self.thunk_noted(closure);
        }
        self.thunk_here(closure)
    }

    /// [`thunk`](Heap::thunk) when perf's map may be on, or in debug mode.
    #[cold]
    #[inline(never)]
    fn thunk_noted<'a, F, C>(&'a self, closure: C) -> Result<Thunk<'a, F, L>>
    where
        F: ThunkSig,
        C: ThunkFn<F> + 'a,
    {
        if self.is_debug() {
            return noted::<C, F, L>(Thunk::build_debug::<C>(
                self,
                Context::boxed(closure),
                C::entry(),
            ));
        }
        noted::<C, F, L>(self.thunk_here(closure))
    }

    /// [`thunk`](Heap::thunk), without perf's map.
    #[inline(always)]
    fn thunk_here<'a, F, C>(&'a self, closure: C) -> Result<Thunk<'a, F, L>>
    where
        F: ThunkSig,
        C: ThunkFn<F> + 'a,
    {
        if std::mem::size_of::<C>() == 0 {
            return Ok(Thunk::zero_sized(self, closure));
        }
        let placement = const { crate::arch::placement(F::CONV, F::CLASSES) };
        let registers = matches!(
            placement,
            Some(Placement::Register(_) | Placement::Float(_))
        );
        // Whether the thunk's code slot has a data slot: a trampoline entry
        // (`true`), or a one-granule thunk of a dual-mapped heap.
        let slot = match self.thunk_slots() {
            ThunkSlots::Table => Some(true),
            ThunkSlots::Granule if registers => Some(false),
            _ => None,
        };
        let tags = const { (handle::inline_tag::<C>(), handle::pair_tag::<C>()) };
        match (tags, slot) {
            ((Some(tag), _), Some(true)) => Thunk::build_static_inline(self, closure, tag),
            // Up to 32 bytes: a table entry's data slot.
            ((None, Some(tag)), Some(true)) => Thunk::build_static_inline(self, closure, tag),
            ((Some(tag), _), Some(false)) => Thunk::build_inline::<1, _>(self, closure, tag),
            // Up to 32 bytes: both data slots of a two-granule thunk.
            ((None, Some(tag)), Some(false)) => Thunk::build_inline::<2, _>(self, closure, tag),
            (_, Some(trampolines)) => Thunk::build_boxed_inline(self, closure, trampolines),
            (_, None) => Thunk::build_boxed(self, closure),
        }
    }

    /// A thunk for an `FnMut` closure, with its code in this heap.
    ///
    /// # Errors
    ///
    /// As [`thunk`](Heap::thunk).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut seen = Vec::new();
    /// {
    ///     let collect = heap.thunk_mut::<unsafe extern "C" fn(u32), _>(|x| seen.push(x))?;
    ///     // SAFETY: the thunk is alive; one call at a time.
    ///     unsafe {
    ///         (collect.as_fn())(1);
    ///         (collect.as_fn())(2);
    ///     }
    /// }
    /// assert_eq!(seen, [1, 2]);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn thunk_mut<'a, F, C>(&'a self, closure: C) -> Result<Thunk<'a, F, L>>
    where
        F: ThunkSig,
        C: ThunkFnMut<F> + 'a,
        F: ClosureSigMut<C>,
        L: SendsClosure<C>,
    {
        let ctx = Context::boxed_mut(MutCtx::new(closure));
        if self.is_debug() {
            return noted::<C, F, L>(Thunk::build_debug::<C>(self, ctx, C::entry()));
        }
        noted::<C, F, L>(Thunk::build(self, ctx, C::entry()))
    }

    /// A thunk for an `FnOnce` closure, with its code in this heap.
    ///
    /// # Errors
    ///
    /// As [`thunk`](Heap::thunk).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let notify = heap.thunk_once::<unsafe extern "C" fn(i32), _>(move |status| {
    ///     tx.send(status).unwrap();
    /// })?;
    /// // SAFETY: the thunk is alive; called once.
    /// unsafe { (notify.as_fn())(7) };
    /// assert_eq!(rx.recv().unwrap(), 7);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn thunk_once<'a, F, C>(&'a self, closure: C) -> Result<Thunk<'a, F, L>>
    where
        F: ThunkSig,
        C: ThunkFnOnce<F> + 'a,
        F: ClosureSigOnce<C>,
        L: SendsClosure<C>,
    {
        let ctx = Context::boxed(OnceCtx::new(closure));
        if self.is_debug() {
            return noted::<C, F, L>(Thunk::build_debug::<C>(self, ctx, C::entry()));
        }
        noted::<C, F, L>(Thunk::build(self, ctx, C::entry()))
    }
}

/// `thunk`, entered in perf's map of JIT code when that is on (one relaxed
/// load otherwise) as `wxthunk thunk <closure type>`. A thunk of a closure
/// that captures nothing is this library's compiled code, which perf names
/// from the binary, so it gets no line.
#[inline(always)]
fn noted<C, F: ThunkSig, L: RawMutex>(thunk: Result<Thunk<'_, F, L>>) -> Result<Thunk<'_, F, L>> {
    if crate::perf_map::may_be_on() {
        if let Ok(t) = &thunk {
            note_thunk(t.code(), std::any::type_name::<C>());
        }
    }
    thunk
}

/// [`noted`]'s line, out of line.
#[cold]
#[inline(never)]
pub(super) fn note_thunk(code: &[u8], closure: &'static str) {
    crate::perf_map::record(|| {
        let name = format!("wxthunk thunk {closure}");
        (code.as_ptr() as usize, code.len(), name)
    });
}
