//! Making a [`Thunk`]: where its closure goes and which code it gets. One
//! constructor per kind (`handle.rs`):
//! - a zero-sized `Fn` closure: a compiled function, no memory at all;
//! - a small `Fn` closure: inline in the data slot of its code slot (a
//!   dual-mapped granule, from this thread's cache or under the shard's
//!   lock, or a trampoline table entry);
//! - a larger `Fn` closure, on a heap whose code slots have data slots:
//!   boxed, the box kept in the data slot (one allocation, the same path);
//! - anything else: a boxed context, and generated code or a trampoline.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Thunk;
use super::closure::ThunkFn;
use super::codegen::{FrameRecord, frame_record, generated_code, placement_const, placement_of};
use super::context::Context;
use super::debug::DebugThunk;
use super::handle::{self, Code, Slow, WithClosure, free_with_closure, write_inline};
use crate::abi::{FnPtr, ThunkSig};
use crate::arch::{self, Placement};
use crate::error::{Error, Result};
use crate::heap::{GranuleThunk, Heap, SlotThunk};
use crate::strategy::CodeStrategy;
use crate::trampoline;

impl<'a, F: ThunkSig, L: RawMutex> Thunk<'a, F, L> {
    /// The thunk of a zero-sized `Fn` closure: no code memory, no context
    /// allocation, no lock. The pointer is an ordinary monomorphized
    /// function of `F`'s signature that calls the closure. A closure that
    /// needs no drop is not kept at all (it is no bytes and no drop); one
    /// that does is kept in a `SLOW` thunk and dropped with it.
    pub(super) fn zero_sized<C: ThunkFn<F> + 'a>(heap: &'a Heap<L>, closure: C) -> Self {
        debug_assert_eq!(std::mem::size_of::<C>(), 0);
        // SAFETY: `bare` is an `extern` function of `F`'s ABI and
        // arguments returning `F`'s result, calling the zero-sized closure;
        // it is not null and lives as long as the program.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(C::bare()) };
        if !std::mem::needs_drop::<C>() {
            // No bytes and no drop: nothing to keep.
            std::mem::forget(closure);
            const { assert!(align_of::<Heap<L>>() > handle::TAGS) };
            let heap = std::ptr::from_ref(heap).expose_provenance();
            // SAFETY: a compiled function needs nothing of the heap, which
            // the thunk keeps only for `heap()`.
            return unsafe { Self::from_parts(fn_ptr, handle::COMPILED, heap) };
        }
        let slow = Slow::boxed(heap, Code::Compiled, Context::boxed(closure), None, false);
        // SAFETY: as above; the box keeps the closure for its drop.
        unsafe { Self::from_slow(fn_ptr, slow) }
    }

    /// The thunk of a small `Fn` closure on a dual-mapped heap: the closure
    /// lives in the private data slot of the code's granule (`N` = 1), or
    /// in both of a two-granule thunk's (`N` = 2), so nothing is allocated
    /// besides the granules. `tag` is the closure's
    /// [`inline_tag`](handle::inline_tag) or [`pair_tag`](handle::pair_tag).
    #[inline(always)]
    pub(super) fn build_inline<const N: usize, C: ThunkFn<F> + 'a>(
        heap: &'a Heap<L>,
        closure: C,
        tag: usize,
    ) -> Result<Self> {
        Self::granule_keeping::<N, C>(heap, closure, tag, C::entry(), None, |closure| {
            Thunk::build_boxed(heap, closure)
        })
    }

    /// The thunk of an `Fn` closure too large for a data slot (or needing a
    /// drop and larger than a word), on a heap whose thunks have data
    /// slots: the closure is boxed, its code passes the box's address, and
    /// the data slot keeps the box (a word, with its drop function). One
    /// allocation, and the code slot's fast path.
    #[inline(always)]
    pub(super) fn build_boxed_inline<C: ThunkFn<F> + 'a>(
        heap: &'a Heap<L>,
        closure: C,
        trampolines: bool,
    ) -> Result<Self> {
        let tag = const {
            match handle::inline_tag::<Box<C>>() {
                Some(tag) => tag,
                None => panic!("a box lives in a data slot"),
            }
        };
        let boxed = Box::new(closure);
        let ctx = std::ptr::from_ref::<C>(&boxed) as usize;
        let fallback = |boxed: Box<C>| Thunk::build_boxed(heap, *boxed);
        if trampolines {
            Self::slot_keeping(heap, boxed, tag, C::entry(), Some(ctx))
        } else {
            Self::granule_keeping::<1, _>(heap, boxed, tag, C::entry(), Some(ctx), fallback)
        }
    }

    /// A `GRANULE` thunk of `N` granules whose code passes `ctx` (or, when
    /// `None`, the first granule's data slot) to `entry`, the slot (or both
    /// slots) keeping `kept` (whose inline tag is `tag`). The code is written first (into a ready
    /// granule of this thread's cache on the global heap, else under the
    /// shard's lock); `kept` is moved into the slot after, before the
    /// pointer exists anywhere but here. Where the heap's granules have no
    /// data slots after all (not expected of a dual-mapped heap),
    /// `fallback` makes the thunk from `kept`.
    ///
    /// `entry` takes `F`'s arguments plus a pointer to a closure that lives
    /// (and may be shared) while `kept` does: at `ctx`, owned by `kept`, or
    /// `kept` itself in the slot.
    #[inline(always)]
    fn granule_keeping<const N: usize, K: 'a>(
        heap: &'a Heap<L>,
        kept: K,
        tag: usize,
        entry: *const (),
        ctx: Option<usize>,
        fallback: impl FnOnce(K) -> Result<Self>,
    ) -> Result<Self> {
        // The check only: the code is made with `placement_const`.
        placement_of::<F>()?;
        let make = move |at, data: NonNull<u8>| {
            generated_code::<F>(
                placement_const::<F>(),
                ctx.unwrap_or(data.as_ptr() as usize),
                entry,
                None,
                at,
            )
        };
        match heap.thunk_granule_fast::<N>(make) {
            // SAFETY: a thunk granule of `heap`, just written by `make`.
            Some(granule) => Ok(unsafe { Self::with_granule(granule, kept, tag) }),
            None => Self::out_of_line(move || match heap.thunk_granule::<N>(make)? {
                // SAFETY: as above.
                Some(granule) => Ok(unsafe { Self::with_granule(granule, kept, tag) }),
                None => fallback(kept),
            }),
        }
    }

    /// The `GRANULE` thunk of `granule`, whose data slot gets `kept`.
    ///
    /// # Safety
    /// `granule` came from `thunk_granule::<N>` of the heap the thunk
    /// borrows (`N` = 2 where `tag` has `PAIR`, else 1), with the code of a
    /// thunk of `F`'s signature passing the closure `kept` is or owns to
    /// its entry; `tag` is `K`'s inline or pair tag. The result owns it.
    #[inline(always)]
    pub(super) unsafe fn with_granule<K: 'a>(
        granule: GranuleThunk<'a>,
        kept: K,
        tag: usize,
    ) -> Self {
        // SAFETY: the granule's data slot (or both, with `PAIR`), which `K`
        // fits (`tag` is its tag); only this thunk uses it, and no call can
        // reach it before the pointer is returned.
        unsafe { write_inline(granule.data(), kept, tag) };
        // SAFETY: the code is a thunk with `F`'s signature (the caller's
        // contract); it is not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(granule.addr as *const ()) };
        let info = std::ptr::from_ref(granule.info).expose_provenance();
        // SAFETY: a `GRANULE` thunk (its region's info records its heap):
        // it keeps the region's info; it owns the granule.
        unsafe { Self::from_parts(fn_ptr, handle::GRANULE | tag, info) }
    }

    /// Runs `slow` out of line and hands its thunk back in registers (a
    /// `Thunk` is two words; the `Result` around it is not), so that the
    /// fast path's result never goes through memory shared with it.
    #[inline(always)]
    pub(super) fn out_of_line(slow: impl FnOnce() -> Result<Self>) -> Result<Self> {
        #[inline(never)]
        fn run<T>(slow: impl FnOnce() -> Result<T>, err: &mut MaybeUninit<Error>) -> Option<T> {
            match slow() {
                Ok(t) => Some(t),
                Err(e) => {
                    err.write(e);
                    None
                }
            }
        }
        let mut err = MaybeUninit::uninit();
        match run(slow, &mut err) {
            Some(thunk) => Ok(thunk),
            // SAFETY: `run` wrote the error when it returned `None`.
            None => Err(unsafe { err.assume_init() }),
        }
    }

    /// The thunk of a small `Fn` closure on a static-trampoline heap: the
    /// closure lives in the data slot of its table entry, so nothing is
    /// allocated besides the entry.
    #[inline(always)]
    pub(super) fn build_static_inline<C: ThunkFn<F> + 'a>(
        heap: &'a Heap<L>,
        closure: C,
        tag: usize,
    ) -> Result<Self> {
        Self::slot_keeping(heap, closure, tag, C::entry(), None)
    }

    /// A `STATIC` thunk whose record passes `ctx` (or, when `None`, the
    /// entry's data slot) to `entry`, the slot keeping `kept` (as in
    /// [`granule_keeping`](Self::granule_keeping)). The record is
    /// published first (into a ready slot, or under the shard's lock);
    /// `kept` is moved into the slot after, before the entry's pointer
    /// exists anywhere but here.
    #[inline(always)]
    fn slot_keeping<K: 'a>(
        heap: &'a Heap<L>,
        kept: K,
        tag: usize,
        entry: *const (),
        ctx: Option<usize>,
    ) -> Result<Self> {
        // The check only: the record is made with `placement_const`.
        placement_of::<F>()?;
        let entry = entry as usize;
        let rec = move |data: NonNull<u8>| {
            trampoline::record(
                F::CONV,
                placement_const::<F>(),
                ctx.unwrap_or(data.as_ptr() as usize),
                entry,
            )
        };
        let kind = trampoline::kind_of(placement_const::<F>());
        match heap.trampoline_slot_fast(kind, rec) {
            // SAFETY: a slot of `heap` whose record was just published.
            Some(slot) => Ok(unsafe { Self::with_slot(slot, kept, tag) }),
            None => Self::out_of_line(move || {
                let slot = heap.trampoline_slot(kind, rec)?;
                // SAFETY: as above.
                Ok(unsafe { Self::with_slot(slot, kept, tag) })
            }),
        }
    }

    /// The `STATIC` thunk of `slot`, whose data slot gets `kept`.
    ///
    /// # Safety
    /// `slot` came from `trampoline_slot` of the heap the thunk borrows,
    /// its record passing the closure `kept` is or owns to its entry
    /// through the adapter for `F`'s placement; `tag` is `K`'s inline tag.
    /// The result owns it.
    #[inline(always)]
    unsafe fn with_slot<K: 'a>(slot: SlotThunk, kept: K, tag: usize) -> Self {
        // The slot's entry in the page for `F`'s placement.
        let at = slot.entry + trampoline::entry_offset(placement_const::<F>());
        // SAFETY: the caller's contract; `at` is that entry.
        unsafe { Self::with_slot_at(slot, at, kept, tag) }
    }

    /// The `STATIC` thunk of `slot` whose function pointer is `at`, its
    /// entry in one page of its table, and whose data slot gets `kept`.
    ///
    /// # Safety
    /// `slot` came from `trampoline_slot` of the heap the thunk borrows;
    /// `at` is the slot's entry in the page of the placement its record was
    /// made for, which runs `F`'s signature (its record's target takes
    /// `F`'s arguments plus the context, directly or through the frame
    /// adapter); `tag` is `K`'s inline tag. The result owns the slot.
    #[inline(always)]
    pub(super) unsafe fn with_slot_at<K: 'a>(
        slot: SlotThunk,
        at: usize,
        kept: K,
        tag: usize,
    ) -> Self {
        // A table's data slot is two data slots long, and its closures are
        // laid out as in a pair whichever tag `K` has (one slot or two).
        // SAFETY: the entry's data slot, which `K` fits (`tag`); only the
        // entry's owner uses it, and no call reaches it before it returns.
        unsafe { write_inline(slot.data, kept, tag | handle::PAIR) };
        // SAFETY: `at` runs `F`'s signature (the caller's contract); it is
        // not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(at as *const ()) };
        // `PAIR` is not kept: it is implied, and its bit is the packed
        // word's.
        let tag = tag & handle::INLINE_DROP;
        // SAFETY: a `STATIC` thunk (its table's info records its heap): it
        // keeps its slot, packed, and owns it from now on.
        unsafe { Self::from_parts(fn_ptr, handle::STATIC | tag, slot.packed as usize) }
    }

    /// A `SLOW` thunk: the context `ctx` (boxed), and generated code or a
    /// trampoline that passes it to `entry`.
    pub(super) fn build(heap: &'a Heap<L>, ctx: Context, entry: *const ()) -> Result<Self> {
        let placement = placement_of::<F>()?;
        let ctx_addr = ctx.ptr.as_ptr() as usize;
        let builds_frame = matches!(placement, Placement::Stack(_));
        if heap.table_code().is_some() {
            let (slot, _) = heap.trampoline(
                trampoline::kind_of(placement),
                |_| trampoline::record(F::CONV, placement, ctx_addr, entry as usize),
                false,
            )?;
            let at = slot.entry() + trampoline::entry_offset(placement);
            // SAFETY: the slot's entry in the page for `F`'s placement puts
            // the record's context where that placement says and reaches
            // `entry` (directly, or through the frame adapter), which takes
            // `F`'s arguments plus the context; it is not null.
            let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(at as *const ()) };
            let slow = Slow::boxed(heap, Code::Static(slot), ctx, None, builds_frame);
            // SAFETY: the thunk owns the slot and the context, in `slow`.
            return Ok(unsafe { Self::from_slow(fn_ptr, slow) });
        }
        let record = frame_record(placement, ctx_addr, entry);
        let code = heap.exec_code_at(arch::THUNK_CODE_MAX, |at| {
            generated_code::<F>(placement, ctx_addr, entry, record.as_deref(), at)
        })?;
        // SAFETY: the code just written is a thunk with `F`'s signature (the
        // context is placed per `F::CONV` and `F::CLASSES`, and `entry`
        // takes `F`'s arguments plus the context); it is not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(code.as_ptr().cast()) };
        let slow = Slow::boxed(heap, Code::Generated(code), ctx, record, builds_frame);
        // SAFETY: the thunk owns the code, the context and the record, in
        // `slow`.
        Ok(unsafe { Self::from_slow(fn_ptr, slow) })
    }

    /// Generated code passing `ctx_addr` to `entry`, in a span of `heap`,
    /// with the record a frame-path thunk reads.
    #[allow(clippy::type_complexity)]
    fn generated(
        heap: &'a Heap<L>,
        placement: Placement,
        ctx_addr: usize,
        entry: *const (),
    ) -> Result<(*const (), Code<'a, L>, Option<Box<FrameRecord>>)> {
        let record = frame_record(placement, ctx_addr, entry);
        let code = heap.exec_code_at(arch::THUNK_CODE_MAX, |at| {
            generated_code::<F>(placement, ctx_addr, entry, record.as_deref(), at)
        })?;
        Ok((code.as_ptr().cast(), Code::Generated(code), record))
    }

    /// A `SLOW` thunk of an `Fn` closure that does not fit a data slot: the
    /// closure and the rest of the thunk in one allocation.
    pub(super) fn build_boxed<C: ThunkFn<F> + 'a>(heap: &'a Heap<L>, closure: C) -> Result<Self> {
        let placement = placement_of::<F>()?;
        let entry = C::entry();
        let mut both = Box::new(WithClosure {
            slow: MaybeUninit::<Slow<'a, L>>::uninit(),
            closure,
        });
        let ctx_addr = std::ptr::from_ref(&both.closure) as usize;
        let builds_frame = matches!(placement, Placement::Stack(_));
        // On error `both` drops the closure (its `Slow` was never written).
        let (fn_ptr, code, record) = if heap.table_code().is_some() {
            let (slot, _) = heap.trampoline(
                trampoline::kind_of(placement),
                |_| trampoline::record(F::CONV, placement, ctx_addr, entry as usize),
                false,
            )?;
            let at = slot.entry() + trampoline::entry_offset(placement);
            (at as *const (), Code::Static(slot), None)
        } else if matches!(placement, Placement::Register(_) | Placement::Float(_))
            && heap.code_strategy().is_some_and(CodeStrategy::dual_maps)
        {
            let granule = heap.thunk_granule::<1>(|at, _| {
                generated_code::<F>(placement_const::<F>(), ctx_addr, entry, None, at)
            })?;
            match granule {
                Some(g) => {
                    let code = Code::Granule {
                        heap,
                        addr: g.addr,
                        info: g.info,
                    };
                    (g.addr as *const (), code, None)
                }
                None => Self::generated(heap, placement, ctx_addr, entry)?,
            }
        } else {
            Self::generated(heap, placement, ctx_addr, entry)?
        };
        both.slow.write(Slow {
            heap,
            code,
            // The closure is freed with the box, after the code.
            ctx: Context::trivial(NonNull::from(&both.closure).cast()),
            record,
            builds_frame,
            free: free_with_closure::<L, C>,
            debug: None,
        });
        let slow = Box::into_raw(both).cast::<Slow<'a, L>>();
        // SAFETY: the code (generated, or a trampoline whose record holds
        // the adapter for `F`'s placement) passes the boxed closure to
        // `entry`, which takes `F`'s arguments plus the context; not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(fn_ptr) };
        // SAFETY: the thunk owns the box: its `Slow` (written above) and
        // the closure; `free_with_closure` frees it whole.
        Ok(unsafe { Self::from_slow(fn_ptr, slow) })
    }
}

impl<'a, F: ThunkSig, L: RawMutex> Thunk<'a, F, L> {
    /// A debug-mode thunk of closure type `C`: a `SLOW` thunk passing
    /// `ctx` to `entry` through the record of its [`DebugThunk`] (generated
    /// code reading it, or a static trampoline whose record points to its
    /// report).
    pub(super) fn build_debug<C>(
        heap: &'a Heap<L>,
        ctx: Context,
        entry: *const (),
    ) -> Result<Self> {
        let placement = placement_of::<F>()?;
        let ctx_addr = ctx.ptr.as_ptr() as usize;
        let builds_frame = matches!(placement, Placement::Stack(_));
        let rec = trampoline::record(F::CONV, placement, ctx_addr, entry as usize);
        let debug = DebugThunk::new::<F, C>(rec);
        let (at, code) = if heap.table_code().is_some() {
            let mut table_rec = rec;
            // No call reads the third word (the frame adapters read the
            // context and entry only): it points to the report.
            table_rec.words[2] = debug.report_addr();
            let (slot, _) =
                heap.trampoline(trampoline::kind_of(placement), |_| table_rec, false)?;
            let at = slot.entry() + trampoline::entry_offset(placement);
            (at, Code::Static(slot))
        } else {
            let record = debug.record_addr();
            let code = heap.exec_code_at(arch::THUNK_CODE_MAX, |_| {
                arch::record_thunk(placement, record)
            })?;
            (code.as_ptr() as usize, Code::Generated(code))
        };
        debug.set_at(at);
        // The code (the record thunk, or the slot's entry in the page for
        // `F`'s placement) puts the record's context where `F`'s placement
        // says and reaches the record's target: `entry`, or the frame
        // adapter for it.
        // SAFETY: as just said, `at` runs `F`'s ABI and signature (the
        // entry takes `F`'s arguments plus the context); it is not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(at as *const ()) };
        let slow = Slow::boxed_debug(heap, code, ctx, builds_frame, debug);
        // SAFETY: the thunk owns the code, the context and the record, in
        // `slow`.
        Ok(unsafe { Self::from_slow(fn_ptr, slow) })
    }
}
