//! What a [`Thunk`](super::Thunk) owns, in the one word after its function
//! pointer (two words in all, so that a `Thunk` moves in two registers):
//! the thunk's *kind* in the low bits, and the address of what the kind
//! keeps. The heap is found from there (`crate::owner`).
//!
//! | kind | the closure | the address kept |
//! | --- | --- | --- |
//! | `COMPILED` | zero-sized, needs no drop: nowhere | the heap |
//! | `GRANULE` | inline in the data slot of a one-granule thunk (both of a two-granule one, `PAIR`), or boxed and the box there | its region's `RegionInfo` |
//! | `STATIC` | inline in the 32-byte data slot of a trampoline table entry (laid out as in a pair of granules), or boxed and the box there | its table's `TableInfo` (the slot packed) |
//! | `SLOW` | boxed with the rest (frame-path and `FnMut`/`FnOnce` thunks, heaps without data slots) | a [`Slow`] box holding the rest |
//!
//! An inline closure that needs no drop is bytes in its slot that go with
//! the slot. One that needs a drop is inline only when it leaves the
//! slot's last word free (at most a word in one slot, three in a pair):
//! that word holds its drop function (`INLINE_DROP`), and the thunk moves
//! the closure out of the slot before the slot goes, then drops it. A
//! closure of up to 32 bytes that fits no single slot takes a pair of
//! granules on a dual-mapped heap, or a table entry's data slot. A larger closure is boxed, and the box (a word that needs a drop)
//! is what the slot keeps, the same way; its code passes the box's address,
//! so a call reads the closure as directly as an inline one.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Thunk;
use super::codegen::FrameRecord;
use super::context::Context;
use super::debug::{self, DebugThunk};
use crate::abi::ThunkSig;
use crate::data_slot;
use crate::heap::{ExecSpan, Heap, RegionInfo, TrampolineSlot};

/// Kinds, in the two low bits of the word.
pub(super) const SLOW: usize = 0;
pub(super) const COMPILED: usize = 1;
pub(super) const GRANULE: usize = 2;
pub(super) const STATIC: usize = 3;
pub(super) const KIND: usize = 3;
/// With `GRANULE` and `STATIC`: the inline closure needs a drop, and its
/// drop function is the data slot's last word.
pub(super) const INLINE_DROP: usize = 4;
/// Every tag bit of the word (what a thunk keeps is aligned to at least 8).
pub(super) const TAGS: usize = 7;
/// With `GRANULE` only (a region's info is aligned to 64, so the bit is
/// free there): the thunk takes two granules, its closure both data
/// slots (32 bytes). A `STATIC` thunk's closure is always laid out so (a
/// table entry's data slot is 32 bytes), without the bit in its word.
pub(super) const PAIR: usize = 8;

/// The rest of a thunk of kind `SLOW`, boxed alone or at the start of a
/// [`WithClosure`]. Dropped in field order: the code first (so no new call
/// can start), then the context, then the record the code read (and then,
/// in a `WithClosure`, the closure).
pub(super) struct Slow<'a, L: RawMutex> {
    pub(super) heap: &'a Heap<L>,
    pub(super) code: Code<'a, L>,
    /// Only dropped: the code passes its address.
    #[allow(dead_code)]
    pub(super) ctx: Context,
    /// Only dropped: a generated frame-path thunk holds its address.
    #[allow(dead_code)]
    pub(super) record: Option<Box<FrameRecord>>,
    pub(super) builds_frame: bool,
    /// Frees the box this `Slow` starts.
    pub(super) free: unsafe fn(*mut Slow<'a, L>),
    /// A debug-mode thunk's record and report (`debug.rs`), which its code
    /// reads: dropped after the code, or kept with it in quarantine.
    pub(super) debug: Option<Box<DebugThunk>>,
}

impl<'a, L: RawMutex> Slow<'a, L> {
    /// A `Slow` boxed alone, for [`Thunk::from_slow`](super::Thunk).
    pub(super) fn boxed(
        heap: &'a Heap<L>,
        code: Code<'a, L>,
        ctx: Context,
        record: Option<Box<FrameRecord>>,
        builds_frame: bool,
    ) -> *mut Slow<'a, L> {
        unsafe fn free<L: RawMutex>(slow: *mut Slow<'_, L>) {
            // SAFETY: made by `Box::into_raw` in `boxed`, freed once.
            drop(unsafe { Box::from_raw(slow) });
        }
        Box::into_raw(Box::new(Slow {
            heap,
            code,
            ctx,
            record,
            builds_frame,
            free: free::<L>,
            debug: None,
        }))
    }

    /// A debug-mode thunk's `Slow`, boxed alone, with its record and report.
    pub(super) fn boxed_debug(
        heap: &'a Heap<L>,
        code: Code<'a, L>,
        ctx: Context,
        builds_frame: bool,
        debug: Box<DebugThunk>,
    ) -> *mut Slow<'a, L> {
        let slow = Self::boxed(heap, code, ctx, None, builds_frame);
        // SAFETY: just boxed, ours alone.
        unsafe { (*slow).debug = Some(debug) };
        slow
    }
}

impl<L: RawMutex> Slow<'_, L> {
    /// Quarantines the code of a debug thunk being dropped (`debug.rs`):
    /// points its record at the report and takes the code out without
    /// freeing it (the caller then frees the rest, the closure included).
    /// Past the quarantine's limit it does nothing, and the code is freed
    /// with the rest.
    pub(super) fn quarantine(&mut self) {
        let Some(debug) = self.debug.take() else {
            return;
        };
        if !debug::admit() {
            // Past the limit: freed with the rest, as in the default mode.
            self.debug = Some(debug);
            return;
        }
        match &self.code {
            // SAFETY: the thunk's own slot, in a table that lives as long
            // as its heap (the slot is never freed now); word 2 of its
            // record points to the report (`build_debug`), which is leaked
            // below.
            Code::Static(slot) => unsafe {
                crate::trampoline::divert_at(slot.entry(), crate::arch::trampoline_dropped())
            },
            // The code reads this record; both are kept from now on.
            Code::Generated(_) => debug.divert(),
            // Debug thunks have no other kind of code; free it as usual.
            _ => {
                self.debug = Some(debug);
                return;
            }
        }
        // The code (its span or slot) is never freed: no newer thunk can
        // take its address.
        std::mem::forget(std::mem::replace(&mut self.code, Code::Compiled));
        self.heap.note_quarantined();
        Box::leak(debug);
    }
}

impl<L: RawMutex> Drop for Code<'_, L> {
    fn drop(&mut self) {
        if let Code::Granule {
            heap, addr, info, ..
        } = *self
        {
            // SAFETY: the thunk's granule (from `thunk_granule::<1>` of
            // `heap`), freed once, here; the thunk is being dropped, so no
            // new call reaches it.
            unsafe { heap.free_thunk_granule::<1>(addr, info) };
        }
    }
}

/// A `Slow` and the boxed closure it calls, in one allocation: the
/// closure's address is known before the code that passes it is made, so
/// the `Slow` part is written after.
#[repr(C)]
pub(super) struct WithClosure<S, C> {
    pub(super) slow: S,
    pub(super) closure: C,
}

/// Frees a `WithClosure<Slow, C>` from the pointer to its `Slow` (its
/// first field; `repr(C)`).
///
/// # Safety
/// `slow` came from `Box::into_raw` of a `WithClosure<MaybeUninit<Slow>, C>`
/// whose `slow` was then written; freed once.
pub(super) unsafe fn free_with_closure<L: RawMutex, C>(slow: *mut Slow<'_, L>) {
    // SAFETY: the caller's contract; `MaybeUninit<Slow>` has `Slow`'s
    // layout, so the allocation is a `WithClosure<Slow, C>`, whole.
    drop(unsafe { Box::from_raw(slow.cast::<WithClosure<Slow<'_, L>, C>>()) });
}

/// Where a `SLOW` thunk's code is.
pub(super) enum Code<'a, L: RawMutex> {
    /// Generated into a heap region (dual-map or protect).
    Generated(ExecSpan<'a, L>),
    /// Generated into a one-granule thunk of a dual-mapped heap (its data
    /// slot unused), freed the way `GRANULE` thunks are.
    Granule {
        heap: &'a Heap<L>,
        addr: usize,
        info: &'a RegionInfo,
    },
    /// An entry of a static trampoline table, with its record (only
    /// dropped: the thunk's pointer is its entry).
    Static(#[allow(dead_code)] TrampolineSlot<'a, L>),
    /// None: a zero-sized closure that needs a drop, called through a
    /// compiled function.
    Compiled,
}

/// The inline tag for a closure of type `C` in one data slot (0, or
/// `INLINE_DROP`), or `None` when it cannot live in one.
pub(super) const fn inline_tag<C>() -> Option<usize> {
    slot_tag::<C>(1)
}

/// The inline tag for a closure of type `C` in the two data slots of a
/// two-granule thunk (`PAIR`, with `INLINE_DROP` if it needs a drop), or
/// `None` when it cannot live there.
pub(super) const fn pair_tag<C>() -> Option<usize> {
    match slot_tag::<C>(2) {
        Some(tag) => Some(tag | PAIR),
        None => None,
    }
}

/// The tag of a closure of type `C` in `slots` consecutive data slots.
const fn slot_tag<C>(slots: usize) -> Option<usize> {
    let bytes = slots * data_slot::DATA_SLOT;
    if size_of::<C>() > bytes || align_of::<C>() > data_slot::DATA_SLOT {
        None
    } else if !std::mem::needs_drop::<C>() {
        Some(0)
    } else if size_of::<C>() <= bytes - size_of::<usize>() && align_of::<C>() <= align_of::<usize>()
    {
        Some(INLINE_DROP)
    } else {
        None
    }
}

/// Words of a data slot (or pair) an `INLINE_DROP` closure may take: all
/// but the last, which holds its drop function.
const fn closure_words(tag: usize) -> usize {
    let slots = if tag & PAIR != 0 { 2 } else { 1 };
    slots * data_slot::DATA_SLOT / size_of::<usize>() - 1
}

/// Writes `closure` into the data slot (or pair) `slot` (and, when `tag`
/// has `INLINE_DROP`, its drop function in the last word).
///
/// # Safety
/// `slot` is a data slot (`DATA_SLOT` bytes aligned to `DATA_SLOT`), or
/// two consecutive ones when `tag` has `PAIR`, that only the caller uses;
/// `tag` is [`inline_tag::<C>`] or [`pair_tag::<C>`].
#[inline(always)]
pub(super) unsafe fn write_inline<C>(slot: NonNull<u8>, closure: C, tag: usize) {
    unsafe fn drop_words<C>(words: *mut u8) {
        // SAFETY: `words` holds a `C` moved out of its slot, dropped once.
        unsafe { std::ptr::drop_in_place(words.cast::<C>()) }
    }
    // SAFETY: the slot fits `C` (the caller passes its tag), and is the
    // caller's.
    unsafe { slot.cast::<C>().as_ptr().write(closure) };
    if tag & INLINE_DROP != 0 {
        // SAFETY: a `C` that needs a drop leaves the last word free here
        // (`slot_tag`); it is aligned to a word.
        unsafe {
            slot.cast::<unsafe fn(*mut u8)>()
                .add(closure_words(tag))
                .write(drop_words::<C> as unsafe fn(*mut u8));
        }
    }
}

/// An inline closure moved out of its data slot, dropped with this.
pub(super) struct MovedOut {
    words: [MaybeUninit<usize>; 3],
    drop: unsafe fn(*mut u8),
}

impl MovedOut {
    /// Moves the closure out of `slot`, written by [`write_inline`] with
    /// `tag`, which has `INLINE_DROP`.
    ///
    /// # Safety
    /// `slot` holds such a closure, not moved out before; it is not read
    /// again.
    #[inline(always)]
    pub(super) unsafe fn take(slot: NonNull<u8>, tag: usize) -> MovedOut {
        let n = closure_words(tag);
        let mut words = [MaybeUninit::uninit(); 3];
        // SAFETY: the caller's contract: the first `n` words are the
        // closure (bitwise moved here; only its own words are read), the
        // next its drop.
        unsafe {
            std::ptr::copy_nonoverlapping(slot.cast().as_ptr(), words.as_mut_ptr(), n);
            MovedOut {
                words,
                drop: slot.cast::<unsafe fn(*mut u8)>().add(n).read(),
            }
        }
    }
}

impl Drop for MovedOut {
    fn drop(&mut self) {
        // SAFETY: `words` holds the closure moved out of its slot (aligned
        // to a word, which is its alignment at most), of the type `drop`
        // was made for; dropped once.
        unsafe { (self.drop)(self.words.as_mut_ptr().cast()) }
    }
}

/// A [`Thunk`]'s two words read and made: its kind, what it keeps, and the
/// constructors from parts (every builder in `build.rs` ends in one).
impl<'a, F: ThunkSig, L: RawMutex> Thunk<'a, F, L> {
    #[inline]
    pub(super) fn kind(&self) -> usize {
        self.word & KIND
    }

    /// The exposed address the kind keeps.
    #[inline]
    pub(super) fn kept(&self) -> usize {
        self.word & !TAGS
    }

    /// A `GRANULE` thunk's region.
    #[inline]
    pub(super) fn region(&self) -> &RegionInfo {
        debug_assert_eq!(self.kind(), GRANULE);
        // SAFETY: a `GRANULE` thunk keeps its region's boxed info, which
        // outlives the granule the thunk holds.
        unsafe { &*std::ptr::with_exposed_provenance::<RegionInfo>(self.word & !(TAGS | PAIR)) }
    }

    /// The rest of a `SLOW` thunk.
    pub(super) fn slow(&self) -> &Slow<'a, L> {
        debug_assert_eq!(self.kind(), SLOW);
        // SAFETY: a `SLOW` thunk keeps its `Slow` box, which it owns until
        // dropped.
        unsafe { &*std::ptr::with_exposed_provenance::<Slow<'a, L>>(self.kept()) }
    }

    /// The thunk at `fn_ptr` of the kind (and inline tag) `tag`, keeping
    /// what `kept` (an exposed address aligned to 8) points to.
    ///
    /// # Safety
    /// `fn_ptr` is a thunk of `F`'s signature made on a heap that lives for
    /// `'a`, as `tag` and `kept` say (`handle.rs`); the result owns it.
    #[inline(always)]
    pub(super) unsafe fn from_parts(fn_ptr: F::Unsafe, tag: usize, kept: usize) -> Self {
        debug_assert_eq!(kept & TAGS, 0);
        Thunk {
            fn_ptr,
            word: kept | tag,
            _heap: PhantomData,
        }
    }

    /// A `SLOW` thunk at `fn_ptr` owning the box `slow` (freed by its
    /// `free`).
    ///
    /// # Safety
    /// As [`from_parts`](Self::from_parts), for the code in `slow`, a box
    /// the thunk owns from now on.
    pub(super) unsafe fn from_slow(fn_ptr: F::Unsafe, slow: *mut Slow<'a, L>) -> Self {
        const { assert!(align_of::<Slow<'a, L>>() > TAGS) };
        // SAFETY: the caller's contract; the thunk owns the box.
        unsafe { Self::from_parts(fn_ptr, SLOW, slow.expose_provenance()) }
    }
}
