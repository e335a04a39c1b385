//! Making a [`Thunk`]: where its closure goes and which code it gets. One
//! constructor per kind:
//! - a zero-sized `Fn` closure: a compiled function, no memory at all;
//! - a small `Fn` closure: inline in the data slot of its code slot (a
//!   dual-mapped granule, on the fast path when it can be, or a trampoline
//!   table entry);
//! - anything else: a boxed context, and generated code or a trampoline.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use lock_api::RawMutex;

use super::closure::ThunkFn;
use super::codegen::{frame_record, generated_code, placement_of};
use super::context::Context;
use super::{Code, Thunk};
use crate::abi::{FnPtr, ThunkSig};
use crate::arch::{self, Placement};
use crate::error::Result;
use crate::heap::{ExecSpan, Heap};
use crate::strategy::ThunkStrategy;
use crate::trampoline;

impl<'a, F: ThunkSig, L: RawMutex> Thunk<'a, F, L> {
    /// The thunk of a zero-sized `Fn` closure: no code memory, no context
    /// allocation (a zero-sized `Box` allocates nothing), no lock. The
    /// pointer is an ordinary monomorphized function of `F`'s signature
    /// that calls the closure; the closure stays in the thunk and is
    /// dropped with it.
    pub(super) fn zero_sized<C: ThunkFn<F> + Send + Sync + 'a>(
        heap: &'a Heap<L>,
        closure: C,
    ) -> Self {
        debug_assert_eq!(std::mem::size_of::<C>(), 0);
        // SAFETY: `bare` is an `extern` function of `F`'s ABI and
        // arguments returning `F`'s result, calling the zero-sized closure;
        // it is not null and lives as long as the program.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(C::bare()) };
        Thunk {
            fn_ptr,
            code: ManuallyDrop::new(Code::Compiled(heap)),
            ctx: Context::boxed(closure),
            record: None,
            builds_frame: false,
            _closure: PhantomData,
        }
    }

    /// The thunk of a small `Fn` closure on a dual-mapped heap: the closure
    /// lives in the private data slot of the code's granule, so nothing is
    /// allocated besides the granule. The code is written first (into a
    /// ready granule of this thread's cache on the global heap, else under
    /// the shard's lock); the closure is moved into its slot after, before
    /// the pointer exists anywhere but here.
    #[inline(always)]
    pub(super) fn build_inline<C: ThunkFn<F> + Send + Sync + 'a>(
        heap: &'a Heap<L>,
        closure: C,
    ) -> Result<Self> {
        let placement = placement_of::<F>()?;
        let entry = C::entry();
        let cached = heap.thunk_granule_cached(|at, data| {
            generated_code::<F>(placement, data.as_ptr() as usize, entry, None, at)
        });
        match cached {
            Some((granule, slot)) => {
                // SAFETY: the granule was just written with a thunk of `F`'s
                // signature (the context, `slot`, placed per `F::CONV` and
                // `F::CLASSES`; `entry` takes `F`'s arguments plus the
                // context); it is not null.
                let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(granule.as_ptr().cast()) };
                Ok(Self::with_inline(
                    fn_ptr,
                    Code::Granule(granule),
                    slot,
                    closure,
                ))
            }
            None => Self::build_inline_locked(heap, closure, placement),
        }
    }

    /// [`build_inline`](Self::build_inline) under the shard's lock: a heap
    /// without thread caches, or a cache that could not serve.
    #[inline(never)]
    fn build_inline_locked<C: ThunkFn<F> + Send + Sync + 'a>(
        heap: &'a Heap<L>,
        closure: C,
        placement: Placement,
    ) -> Result<Self> {
        let entry = C::entry();
        let fast = heap.exec_granule_fast(|at, data| {
            generated_code::<F>(placement, data.as_ptr() as usize, entry, None, at)
        });
        if let Some((code, slot)) = fast {
            return Ok(Self::with_span(code, slot, closure));
        }
        let (code, slot) = heap.exec_thunk_granule(|at, data| {
            let ctx = data.map_or(0, |d| d.as_ptr() as usize);
            generated_code::<F>(placement, ctx, entry, None, at)
        })?;
        let Some(slot) = slot else {
            // No data slot after all (not expected of a dual-mapped
            // granule): the code, pointing nowhere, goes; box the closure.
            drop(code);
            return Thunk::build(heap, Context::boxed(closure), entry);
        };
        Ok(Self::with_span(code, slot, closure))
    }

    /// The thunk of a small `Fn` closure on a static-trampoline heap: the
    /// closure lives in the data slot of its table entry, so nothing is
    /// allocated besides the entry. The record (pointing at the slot) is
    /// published under the heap's lock; the closure is moved into the slot
    /// after, before the entry's pointer exists anywhere but here.
    pub(super) fn build_static_inline<C: ThunkFn<F> + Send + Sync + 'a>(
        heap: &'a Heap<L>,
        closure: C,
    ) -> Result<Self> {
        let placement = placement_of::<F>()?;
        let entry = C::entry() as usize;
        let (slot, data) = heap.trampoline(
            |data| {
                let ctx = data.map_or(0, |d| d.as_ptr() as usize);
                trampoline::record(F::CONV, placement, ctx, entry)
            },
            true,
        )?;
        let data = data.expect("a data slot was asked for");
        // SAFETY: the data slot is this entry's, `DATA_SLOT` bytes aligned
        // to `DATA_SLOT`, which `C` fits (checked by `Heap::thunk`); only
        // the owner of the entry uses it, and no call can reach it before
        // the entry's pointer is returned.
        unsafe { data.cast::<C>().as_ptr().write(closure) };
        // SAFETY: the entry jumps through a record that holds the adapter
        // for `F`'s placement, the context and `entry`, which takes `F`'s
        // arguments plus the context; it is not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(slot.entry() as *const ()) };
        Ok(Thunk {
            fn_ptr,
            code: ManuallyDrop::new(Code::Static(slot)),
            // SAFETY: the slot holds the closure until `Drop for Thunk`
            // moves it out, before it frees the entry and so the slot.
            ctx: unsafe { Context::inline::<C>(data) },
            record: None,
            builds_frame: matches!(placement, Placement::Stack(_)),
            _closure: PhantomData,
        })
    }

    /// The thunk whose code is the span `code` and whose closure goes into
    /// `slot`, the granule's data slot.
    #[inline]
    fn with_span<C: ThunkFn<F> + Send + Sync + 'a>(
        code: ExecSpan<'a, L>,
        slot: NonNull<u8>,
        closure: C,
    ) -> Self {
        // SAFETY: the code just written is a thunk with `F`'s signature (the
        // context is placed per `F::CONV` and `F::CLASSES`, and `entry`
        // takes `F`'s arguments plus the context); it is not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(code.as_ptr().cast()) };
        Self::with_inline(fn_ptr, Code::Generated(code), slot, closure)
    }

    /// The thunk at `fn_ptr`, whose code is `code` and whose closure goes
    /// into `slot`, the code granule's data slot.
    #[inline(always)]
    fn with_inline<C: ThunkFn<F> + Send + Sync + 'a>(
        fn_ptr: F::Unsafe,
        code: Code<'a, L>,
        slot: NonNull<u8>,
        closure: C,
    ) -> Self {
        // SAFETY: the slot is this granule's, `DATA_SLOT` bytes aligned to
        // `DATA_SLOT`, which `C` fits (checked by `Heap::thunk`); nothing
        // else uses it while the granule is ours, and no call can reach it
        // before the pointer is returned.
        unsafe { slot.cast::<C>().as_ptr().write(closure) };
        Thunk {
            fn_ptr,
            code: ManuallyDrop::new(code),
            // SAFETY: the slot holds the closure until `Drop for Thunk`
            // moves it out, before it frees the code and so the slot.
            ctx: unsafe { Context::inline::<C>(slot) },
            record: None,
            builds_frame: false,
            _closure: PhantomData,
        }
    }

    pub(super) fn build(heap: &'a Heap<L>, ctx: Context, entry: *const ()) -> Result<Self> {
        let placement = placement_of::<F>()?;
        let ctx_addr = ctx.ptr.as_ptr() as usize;
        let builds_frame = matches!(placement, Placement::Stack(_));
        if heap.thunk_strategy() == ThunkStrategy::StaticTrampolines {
            let (slot, _) = heap.trampoline(
                |_| trampoline::record(F::CONV, placement, ctx_addr, entry as usize),
                false,
            )?;
            // SAFETY: the entry jumps through a record that holds the
            // adapter for `F`'s placement, the context and `entry`, which
            // takes `F`'s arguments plus the context; it is not null.
            let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(slot.entry() as *const ()) };
            return Ok(Thunk {
                fn_ptr,
                code: ManuallyDrop::new(Code::Static(slot)),
                ctx,
                record: None,
                builds_frame,
                _closure: PhantomData,
            });
        }
        let record = frame_record(placement, ctx_addr, entry);
        let code = heap.exec_code_at(arch::THUNK_CODE_MAX, |at| {
            generated_code::<F>(placement, ctx_addr, entry, record.as_deref(), at)
        })?;
        // SAFETY: the code just written is a thunk with `F`'s signature (the
        // context is placed per `F::CONV` and `F::CLASSES`, and `entry`
        // takes `F`'s arguments plus the context); it is not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(code.as_ptr().cast()) };
        Ok(Thunk {
            fn_ptr,
            code: ManuallyDrop::new(Code::Generated(code)),
            ctx,
            record,
            builds_frame,
            _closure: PhantomData,
        })
    }
}
