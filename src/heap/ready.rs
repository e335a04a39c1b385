//! Ready granules: a free thunk allocation (one granule, or two for a
//! closure that takes both data slots) of a dual-mapped region together
//! with its writable view (whose page holds bytes), looked up
//! once under the shard's lock so that a thunk can be written into it later
//! without any lookup. A [`Magazine`] is a small stack of them taken under
//! one [`Stamp`]; the global heap keeps one per thread (`thread_cache.rs`).
//!
//! A ready granule is valid while its stamp is the current one: its region
//! is this process's own and not shared with a fork child, so its view is
//! still the one to write through (a region is only ever moved, and its
//! view replaced, after the stamp changed; see `fork.rs`). The granule is
//! marked in use in its region and counted live in its shard while it is
//! ready, so nothing else takes it and its region is not released; its
//! bytes are traps.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::fork::Stamp;
use super::region::{GRANULE, RegionInfo};
use crate::trampoline::ENTRY_SIZE;

/// A free thunk allocation, ready to take a thunk (see the module docs):
/// 24 bytes. Its length is its magazine's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    /// The address its first granule runs at.
    pub(super) addr: usize,
    /// Its region's lock-free side (which outlives the granule).
    pub(super) info: NonNull<RegionInfo>,
    /// Its first granule's writable view.
    pub(super) view: NonNull<u8>,
}

// SAFETY: a `Ready` names heap-owned memory of a granule nobody else holds
// (marked in use, see the module docs); whichever thread holds it may write
// there, as the heap's lock or a thread cache orders.
unsafe impl Send for Ready {}
// SAFETY: a shared `Ready` gives out addresses only, never access; handles
// that hold one (`ThunkGranule`) take their auto traits from their heap.
unsafe impl Sync for Ready {}

/// Ready granules a magazine holds at most.
pub(super) const MAGAZINE_DEPTH: usize = 64;

/// A free static-trampoline slot, ready to take a thunk: taken in its
/// table (counted live in its shard), its record pointing at the trap
/// target. Records and data slots are private memory, so a fork child's
/// copy is its own; the stamp only makes a child flush what it inherited.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadySlot {
    /// The entry's address.
    pub(super) entry: usize,
    /// The slot, packed with its shard (`SlotRef::pack`).
    pub(super) packed: u64,
}

/// A value a magazine holds: whole machine words, moved a word at a time.
///
/// # Safety
/// The type is `usize`-sized words with no padding (every byte is part of
/// an initialised word), aligned to a word.
pub(super) unsafe trait Words: Copy {}

// SAFETY: three word-sized fields, no padding.
unsafe impl Words for Ready {}
// SAFETY: two word-sized fields (`usize`, `u64` on 64-bit targets, where
// static trampolines exist), no padding there.
unsafe impl Words for ReadySlot {}

/// Moves `value` to `dst` a word at a time, each a volatile store, so that
/// the next [`read_words`] of it (its popping, on the next thunk creation)
/// reads every word from exactly one store: a wider load over narrower
/// stores still in the store buffer would stall on store forwarding.
///
/// # Safety
/// `dst` is valid for a write of `T`.
#[inline(always)]
unsafe fn write_words<T: Words>(dst: *mut T, value: T) {
    const { assert!(size_of::<T>() % size_of::<usize>() == 0) };
    let src = std::ptr::from_ref(&value).cast::<usize>();
    for i in 0..size_of::<T>() / size_of::<usize>() {
        // SAFETY: `T` is words (`Words`); `dst` is valid for `T`.
        unsafe { dst.cast::<usize>().add(i).write_volatile(src.add(i).read()) };
    }
}

/// Reads a `T` a word at a time, each a volatile load (see
/// [`write_words`]).
///
/// # Safety
/// `src` holds an initialised `T`.
#[inline(always)]
unsafe fn read_words<T: Words>(src: *const T) -> T {
    let mut value = MaybeUninit::<T>::uninit();
    for i in 0..size_of::<T>() / size_of::<usize>() {
        // SAFETY: `T` is words (`Words`); `src` holds a `T`.
        unsafe {
            let word = src.cast::<usize>().add(i).read_volatile();
            value.as_mut_ptr().cast::<usize>().add(i).write(word);
        }
    }
    // SAFETY: every word of `value` was written.
    unsafe { value.assume_init() }
}

/// A stack of up to [`MAGAZINE_DEPTH`] ready granules (or trampoline
/// slots), all taken under one stamp. Not synchronised: its owner (a thread
/// cache, or a shard's lock) orders access.
#[repr(C)]
pub(super) struct Magazine<T: Words = Ready> {
    stamp: Stamp,
    len: usize,
    slots: [MaybeUninit<T>; MAGAZINE_DEPTH],
}

/// A thread's (or a shard's) magazines: of ready thunk allocations of one
/// and of two granules (`thunks[n - 1]`: a two-granule thunk's closure
/// takes both data slots), and of trampoline slots.
#[repr(C)]
pub(super) struct Magazines {
    pub(super) thunks: [Magazine<Ready>; 2],
    pub(super) slots: Magazine<ReadySlot>,
}

/// How many ready allocations magazines hold, by kind (for `stats`: they
/// are in use in their shards, not live).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Held {
    /// One- and two-granule thunk allocations.
    pub(super) thunks: [usize; 2],
    pub(super) slots: usize,
}

impl Held {
    /// Allocations held.
    pub(super) fn allocations(&self) -> usize {
        self.thunks[0] + self.thunks[1] + self.slots
    }

    /// Bytes they take.
    pub(super) fn bytes(&self) -> usize {
        self.thunks[0] * GRANULE + self.thunks[1] * 2 * GRANULE + self.slots * ENTRY_SIZE
    }

    /// Both counts together.
    pub(super) fn plus(self, other: Held) -> Held {
        Held {
            thunks: [
                self.thunks[0] + other.thunks[0],
                self.thunks[1] + other.thunks[1],
            ],
            slots: self.slots + other.slots,
        }
    }
}

impl Magazines {
    pub(super) const fn new() -> Self {
        Magazines {
            thunks: [Magazine::new(), Magazine::new()],
            slots: Magazine::new(),
        }
    }

    /// What the magazines hold.
    pub(super) fn held(&self) -> Held {
        Held {
            thunks: [self.thunks[0].len(), self.thunks[1].len()],
            slots: self.slots.len(),
        }
    }
}

impl<T: Words> Magazine<T> {
    pub(super) const fn new() -> Self {
        Magazine {
            stamp: Stamp::NONE,
            len: 0,
            slots: [MaybeUninit::uninit(); MAGAZINE_DEPTH],
        }
    }

    /// Ready granules held.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether the granules held were taken under `now` (an empty magazine
    /// takes any stamp).
    #[inline]
    pub(super) fn is_current(&self, now: Stamp) -> bool {
        self.len == 0 || self.stamp == now
    }

    /// The last granule pushed, if there is one and it is current.
    #[inline]
    pub(super) fn pop(&mut self, now: Stamp) -> Option<T> {
        if self.len == 0 || self.stamp != now {
            return None;
        }
        self.len -= 1;
        // SAFETY: slots below `len` are initialised (see `push`).
        Some(unsafe { read_words(self.slots[self.len].as_ptr()) })
    }

    /// Pushes `ready`, taken under `now`; gives it back when the magazine
    /// is full or holds granules of another stamp.
    #[inline]
    pub(super) fn push(&mut self, ready: T, now: Stamp) -> Result<(), T> {
        if self.len == MAGAZINE_DEPTH || !self.is_current(now) {
            return Err(ready);
        }
        self.stamp = now;
        // SAFETY: a slot of the magazine, valid for a `T`.
        unsafe { write_words(self.slots[self.len].as_mut_ptr(), ready) };
        self.len += 1;
        Ok(())
    }

    /// Takes the `n` granules pushed last (all, when `n >= len`).
    pub(super) fn take(&mut self, n: usize) -> impl Iterator<Item = T> + '_ {
        let keep = self.len.saturating_sub(n);
        let end = std::mem::replace(&mut self.len, keep);
        // SAFETY: slots below the old `len` were initialised; those from
        // `keep` on are no longer counted, so each is read once.
        self.slots[keep..end]
            .iter()
            .map(|slot| unsafe { slot.assume_init() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(i: usize) -> Ready {
        Ready {
            addr: i,
            info: NonNull::dangling(),
            view: NonNull::dangling(),
        }
    }

    fn stamp(epoch: u64) -> Stamp {
        Stamp::from_parts(1, epoch)
    }

    #[test]
    fn a_magazine_is_a_stack_of_one_stamp() {
        let mut m = Magazine::<Ready>::new();
        assert!(m.pop(stamp(0)).is_none());
        for i in 0..3 {
            m.push(ready(i), stamp(0)).unwrap();
        }
        // Another stamp neither pops nor pushes while granules are held.
        assert!(m.pop(stamp(1)).is_none());
        assert!(m.push(ready(9), stamp(1)).is_err());
        assert_eq!(m.pop(stamp(0)).unwrap().addr, 2);
        assert_eq!(m.len(), 2);
        // Emptied, it takes any stamp.
        let taken: Vec<_> = m.take(MAGAZINE_DEPTH).map(|r| r.addr).collect();
        assert_eq!(taken, [0, 1]);
        assert!(m.is_current(stamp(1)));
        m.push(ready(5), stamp(1)).unwrap();
        assert_eq!(m.pop(stamp(1)).unwrap().addr, 5);
    }

    #[test]
    fn a_full_magazine_refuses_and_gives_back_the_last_pushed() {
        let mut m = Magazine::<Ready>::new();
        for i in 0..MAGAZINE_DEPTH {
            m.push(ready(i), stamp(0)).unwrap();
        }
        let refused = m.push(ready(99), stamp(0)).unwrap_err();
        assert_eq!(refused.addr, 99);
        let last: Vec<_> = m.take(3).map(|r| r.addr).collect();
        assert_eq!(last, [61, 62, 63]);
        assert_eq!(m.len(), MAGAZINE_DEPTH - 3);
    }
}
