//! Which pages of a region use memory: a dual-mapped page is committed
//! (filled with traps and mapped read+exec from the file) when code is
//! first written on it, and `compact` gives back pages that hold no
//! allocation, code and data slots alike.

use super::{Backing, Region};
use crate::arch;
use crate::bitmap::Bitmap;
use crate::error::{Error, Result};
use crate::sys::{self, Prot};

impl Region {
    /// Fills `offset..offset+len` (bytes) with traps.
    #[inline]
    pub(super) fn fill_traps(&self, offset: usize, len: usize) -> Result<()> {
        match &self.backing {
            Backing::DualMap {
                rw: Some(rw), rx, ..
            } => {
                // SAFETY: inside the read-write view; the bytes are not
                // running (free, or newly committed).
                let dst = unsafe { std::slice::from_raw_parts_mut(rw.as_ptr().add(offset), len) };
                arch::fill_traps(dst);
                // The traps, not stale code, from now on.
                // SAFETY: inside the region.
                sys::flush_icache_views(dst.as_ptr(), unsafe { rx.as_ptr().add(offset) }, len);
                Ok(())
            }
            Backing::DualMap { file, rw: None, rx } => {
                let mut traps = vec![0u8; len];
                // Line the pattern up with the executable addresses.
                arch::fill_traps_at(&mut traps, rx.as_ptr() as usize + offset);
                file.write_at(offset, &traps)
                    .map_err(|e| Error::os("pwrite (heap memfd)", e))?;
                // SAFETY: inside the region.
                sys::flush_icache(unsafe { rx.as_ptr().add(offset) }, len);
                Ok(())
            }
            Backing::Protect { .. } => Ok(()),
        }
    }

    /// Commits the dual-mapped pages that `offset..offset+len` covers and
    /// that are not committed yet: fills them with traps and maps them
    /// read+exec from the file. On error the pages stay uncommitted.
    #[inline]
    pub(super) fn commit_pages(&mut self, offset: usize, len: usize) -> Result<()> {
        // Shifts, not divisions: this is on every thunk's creation.
        let shift = sys::page_size().trailing_zeros();
        let first = offset >> shift;
        let end = (offset + len + (1 << shift) - 1) >> shift;
        if end == first + 1 && self.committed.get(first) {
            return Ok(()); // the usual case: one page, already committed
        }
        self.commit_pages_slow(first, end)
    }

    #[cold]
    fn commit_pages_slow(&mut self, first: usize, end: usize) -> Result<()> {
        let page = sys::page_size();
        let mut p = first;
        while p < end {
            if self.committed.all_set(p, 1) {
                p += 1;
                continue;
            }
            // A run of uncommitted pages: one fill and one mapping.
            let mut q = p + 1;
            while q < end && !self.committed.all_set(q, 1) {
                q += 1;
            }
            let Backing::DualMap { file, .. } = &self.backing else {
                unreachable!("commit_pages on a dual-mapped region only");
            };
            // The pages get their memory before the first store to them: on
            // a full filesystem that store would be a SIGBUS.
            file.reserve(p * page, (q - p) * page)
                .map_err(|e| Error::os("fallocate (a page of a heap's code file)", e))?;
            self.fill_traps(p * page, (q - p) * page)?;
            let Backing::DualMap { file, rx, .. } = &self.backing else {
                unreachable!("commit_pages on a dual-mapped region only");
            };
            // SAFETY: `p..q` are pages of our own reservation, inaccessible
            // until now, so nothing runs there; they get the file's bytes
            // (traps just written).
            unsafe { file.map_over(rx.at(p * page), p * page, (q - p) * page, self.exec) }
                .map_err(|e| Error::os("mmap(PROT_READ|PROT_EXEC) of the heap memfd", e))?;
            self.committed.mark_range(p, q - p);
            self.committed_pages += q - p;
            p = q;
        }
        Ok(())
    }

    /// Gives back the memory of committed pages that hold no allocation.
    /// Returns the bytes released.
    pub(crate) fn decommit_free_pages(&mut self) -> usize {
        let page = sys::page_size();
        let per_page = page >> self.granule_shift;
        let mut released = 0;
        for p in 0..self.size / page {
            if !self.committed.all_set(p, 1)
                || !self.used.all_clear(p * per_page.max(1), per_page.max(1))
            {
                continue;
            }
            // Neither way changes a mapping (so the process's mapping count
            // stays bounded, however fragmented the free pages are); the page
            // reads as zeros until code is written on it again.
            let ok = match &self.backing {
                // SAFETY (of the hole): no allocation is on the page; it
                // holds only traps and nothing may run it.
                Backing::DualMap { file, .. } => file.punch_hole(p * page, page).is_ok(),
                // SAFETY: as above; the region's private pages are ours.
                Backing::Protect { base } => unsafe { base.discard(p * page, page) }.is_ok(),
            };
            if ok {
                self.committed.unmark_range(p, 1);
                self.committed_pages -= 1;
                released += page;
            }
        }
        if let Some(data) = &mut self.data {
            released += data.decommit_free(&self.used);
        }
        released
    }

    /// Takes `start..start+n` out of use for good: an allocation freed
    /// while its region could not be written (shared with a forked process
    /// and not movable to a file of its own), so its code could not become
    /// traps. Each page of it that now holds nothing else in use is made
    /// inaccessible (`PROT_NONE`, which removing access is allowed to do
    /// under every lockdown), so a stale call faults instead of running
    /// the freed code; such a page counts as uncommitted again (a later
    /// commit fills it with traps from the file first).
    pub(crate) fn strand(&mut self, start: usize, n: usize) {
        let granules = self.used.len();
        let stranded = self.stranded.get_or_insert_with(|| Bitmap::new(granules));
        stranded.mark_range(start, n);
        let Backing::DualMap { rx, .. } = &self.backing else {
            return;
        };
        let page = sys::page_size();
        let per_page = (page >> self.granule_shift).max(1);
        let first = (start << self.granule_shift) / page;
        let last = (((start + n) << self.granule_shift) - 1) / page;
        for p in first..=last {
            if !self.committed.get(p) {
                continue;
            }
            let g = p * per_page;
            let only_stranded = (g..g + per_page).all(|i| !self.used.get(i) || stranded.get(i));
            // SAFETY: a committed page of our own executable view whose
            // allocations are all stranded: nothing may run it any more.
            let closed = only_stranded && unsafe { rx.protect(p * page, page, Prot::None) }.is_ok();
            if closed {
                self.committed.unmark_range(p, 1);
                self.committed_pages -= 1;
            }
        }
    }
}
