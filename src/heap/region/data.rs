//! The private data slots of a dual-mapped region (see [`DataSlots`]).

use std::ptr::NonNull;

use super::DUAL_GRANULE_SHIFT;
use crate::bitmap::Bitmap;
use crate::data_slot::DATA_SLOT;
use crate::error::{Error, Result};
use crate::strategy::CodeStrategy;
use crate::sys::{self, Mapping, Prot};

/// Private read-write data slots paired with the granules of a dual-mapped
/// region, [`DATA_SLOT`] bytes each: a small closure lives in the slot of
/// its thunk's granule, so creating the thunk allocates nothing else.
///
/// The mapping is private and anonymous, never executable and never shared
/// with another process: a fork child gets its own copy-on-write copy (its
/// inherited thunks keep their closures; neither process sees the other's
/// later writes). Pages are touched only where a thunk was made; `compact`
/// gives back pages whose granules are all free.
#[derive(Debug)]
pub(super) struct DataSlots {
    map: Mapping,
    /// Data pages a slot was handed out on (and so may use memory).
    committed: Bitmap,
    committed_pages: usize,
}

/// Bytes of data slots a region of `size` bytes gets: `DATA_SLOT` per
/// granule, in whole pages, for dual-mapped regions of thunk-sized
/// granules; none otherwise.
pub(super) fn bytes_for(size: usize, strategy: CodeStrategy, granule_shift: u32) -> usize {
    match strategy {
        CodeStrategy::DualMap | CodeStrategy::DualMapFile
            if granule_shift == DUAL_GRANULE_SHIFT =>
        {
            ((size >> granule_shift) * DATA_SLOT).next_multiple_of(sys::page_size())
        }
        _ => 0,
    }
}

impl DataSlots {
    /// Maps `len` bytes of data slots; `None` for `len == 0`.
    pub(super) fn new(len: usize) -> Result<Option<DataSlots>> {
        if len == 0 {
            return Ok(None);
        }
        let map = Mapping::anon(len, Prot::ReadWrite)
            .map_err(|e| Error::os("mmap (heap data slots)", e))?;
        Ok(Some(DataSlots {
            committed: Bitmap::new(len / sys::page_size()),
            map,
            committed_pages: 0,
        }))
    }

    /// The slot of granule `start`, its page marked as using memory.
    #[inline]
    pub(super) fn slot(&mut self, start: usize) -> Option<NonNull<u8>> {
        let offset = start * DATA_SLOT;
        let page = offset >> sys::page_size().trailing_zeros();
        if !self.committed.get(page) {
            self.committed.mark_range(page, 1);
            self.committed_pages += 1;
        }
        Some(self.map.at(offset))
    }

    /// The first slot's address.
    pub(super) fn base(&self) -> NonNull<u8> {
        self.map.ptr()
    }

    /// Bytes of address space.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Pages a slot was handed out on.
    pub(super) fn committed_pages(&self) -> usize {
        self.committed_pages
    }

    /// Bytes of bookkeeping.
    pub(super) fn metadata_bytes(&self) -> usize {
        self.committed.heap_bytes()
    }

    /// Gives back the pages whose granules are all free in `used` (the
    /// region's granule bit vector). Returns the bytes released.
    pub(super) fn decommit_free(&mut self, used: &Bitmap) -> usize {
        let page = sys::page_size();
        let granules = used.len();
        // A data page serves `page / DATA_SLOT` granules; when none of them
        // is in use, its closures are gone and it can go too.
        let per_data_page = page / DATA_SLOT;
        let mut released = 0;
        for d in 0..self.map.len() / page {
            let first = d * per_data_page;
            let n = per_data_page.min(granules.saturating_sub(first));
            if !self.committed.get(d) || n == 0 || !used.all_clear(first, n) {
                continue;
            }
            // SAFETY: no granule of this page is allocated, so no closure
            // lives in it and nothing reads it; it is our own private
            // memory, read as zeros afterwards.
            if unsafe { self.map.discard(d * page, page) }.is_ok() {
                self.committed.unmark_range(d, 1);
                self.committed_pages -= 1;
                released += page;
            }
        }
        released
    }
}
