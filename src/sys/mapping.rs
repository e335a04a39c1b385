//! [`Mapping`]: a range of whole pages this process mapped, owned, and
//! unmapped when dropped. Every mapping wxthunk makes is one (anonymous
//! reservations, read-write views, memfd views); nothing above `sys`
//! unmaps by hand.

use std::io;
use std::ptr::NonNull;

use super::{Prot, platform};

/// A range of whole pages mapped by `sys`, unmapped on drop.
///
/// Parts of the range may be remapped in place (`MAP_FIXED`, e.g. a memfd
/// mapped read+exec over a reservation) or have their protection changed:
/// the range stays one owned whole, and drop unmaps all of it.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` owns an address range, not data reached through it:
// moving the owner to another thread moves nothing else. (It is not `Sync`:
// what may be done through `&Mapping` from several threads is the owner's
// business, argued where the owner shares it.)
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes (whole pages) of private, zero-filled memory.
    pub(crate) fn anon(len: usize, prot: Prot) -> io::Result<Mapping> {
        Mapping::anon_near(len, prot, 0)
    }

    /// As [`anon`](Self::anon), asking for address `hint` if that range is
    /// free (the kernel picks another address otherwise; nothing is ever
    /// replaced).
    pub(crate) fn anon_near(len: usize, prot: Prot, hint: usize) -> io::Result<Mapping> {
        let ptr = platform::map_anon_near(len, prot, hint)?;
        // SAFETY: `len` bytes at `ptr` were just mapped, by us, for us.
        Ok(unsafe { Mapping::from_raw(ptr, len) })
    }

    /// Takes ownership of `len` bytes mapped at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` is a range of whole pages that `sys` just mapped and
    /// that nothing else owns (it is unmapped when the result drops).
    pub(in crate::sys) unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Mapping {
        Mapping { ptr, len }
    }

    /// The first byte.
    #[inline]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The first byte, as a raw pointer.
    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address `offset` bytes in (`offset <= len`).
    #[inline]
    pub(crate) fn at(&self, offset: usize) -> NonNull<u8> {
        assert!(
            offset <= self.len,
            "offset {offset} past a {}-byte mapping",
            self.len
        );
        // SAFETY: inside the mapping (or one past its end), so not null and
        // in bounds of one allocation.
        unsafe { self.ptr.add(offset) }
    }

    fn range(&self, offset: usize, len: usize) -> NonNull<u8> {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "{offset}+{len} past a {}-byte mapping",
            self.len
        );
        self.at(offset)
    }

    /// Changes the protection of `offset..offset+len` (whole pages).
    ///
    /// # Safety
    /// No live Rust reference or running code relies on the access being
    /// removed.
    pub(crate) unsafe fn protect(&self, offset: usize, len: usize, prot: Prot) -> io::Result<()> {
        let at = self.range(offset, len);
        // SAFETY: whole pages of a mapping we own; the caller vouches that
        // nothing relies on the old access.
        unsafe { platform::protect(at, len, prot) }
    }

    /// Replaces `offset..offset+len` (whole pages) with private,
    /// zero-filled memory of `prot`, in one step.
    ///
    /// # Safety
    /// Nothing relies on what was mapped there (no live reference into it,
    /// no code running from it).
    pub(crate) unsafe fn replace_with_anon(
        &self,
        offset: usize,
        len: usize,
        prot: Prot,
    ) -> io::Result<()> {
        let at = self.range(offset, len);
        // SAFETY: whole pages of a mapping we own; the caller vouches that
        // nothing relies on their contents.
        unsafe { platform::map_anon_over(at, len, prot) }
    }

    /// Drops the contents of `offset..offset+len` (whole pages of private
    /// memory): they read as zeros afterwards. Changes no mapping.
    ///
    /// # Safety
    /// Nothing relies on the contents of the range.
    pub(crate) unsafe fn discard(&self, offset: usize, len: usize) -> io::Result<()> {
        let at = self.range(offset, len);
        // SAFETY: as above.
        unsafe { platform::discard(at, len) }
    }

    /// Keeps the whole mapping out of every process made by copying this
    /// one (`MADV_DONTFORK`): in a child it is simply not mapped. Such a
    /// child must [`forget`](std::mem::forget) the `Mapping` it inherited
    /// rather than drop it: the range is not its own.
    pub(crate) fn dont_fork(&self) -> io::Result<()> {
        // SAFETY: our own whole pages; the advice changes only what a child
        // inherits.
        unsafe { platform::dont_fork(self.ptr, self.len) }
    }

    /// Gives up ownership: the range stays mapped for the rest of the
    /// process.
    pub(crate) fn leak(self) -> NonNull<u8> {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the range (see `from_raw`); our owner drops us only
        // when nothing reads, writes or runs it any more.
        let r = unsafe { platform::unmap(self.ptr, self.len) };
        debug_assert!(r.is_ok(), "munmap: {r:?}");
    }
}
