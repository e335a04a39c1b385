//! One region of a code heap: a contiguous reservation of pages, the
//! mappings that make it writable and executable under the heap's strategy,
//! and the bit vectors (outside the code) that say what is in use.
//! `data.rs`: the private data slots paired with the granules of a
//! dual-mapped region; `pages.rs`: committing pages when code is first
//! written on them and giving free ones back; `unshare.rs`: moving a
//! dual-mapped region to a file of its own after a fork (step 2 of the
//! fork model in `fork.rs`).

mod data;
mod info;
mod pages;
mod unshare;

use std::ptr::NonNull;

use super::fork::Stamp;
use crate::arch;
use crate::bitmap::Bitmap;
use crate::error::{Error, Result};
use crate::policy;
use crate::strategy::CodeStrategy;
use crate::sys::{self, CodeFile, Mapping, Prot};
use data::DataSlots;
pub(crate) use info::{GranuleAt, RegionInfo};

/// The mappings of a region.
#[derive(Debug)]
enum Backing {
    /// A private anonymous reservation. Pages are `PROT_NONE` until code is
    /// written; then read-write for the copy, then read+exec; freed, they
    /// get traps the same way and stay read+exec. A page belongs to one
    /// allocation at a time (the allocation unit is a page), so no page that
    /// may be running is ever made writable.
    Protect { base: Mapping },
    /// A memfd mapped read+exec at `rx` (never writable) and, unless the heap
    /// is strict, read-write at `rw`. In strict mode no writable mapping
    /// exists: bytes reach the file with `pwrite`. `rx` is a `PROT_NONE`
    /// reservation except for the pages code was written on, which are
    /// filled with traps and mapped read+exec from the file then.
    DualMap {
        file: CodeFile,
        rx: Mapping,
        rw: Option<Mapping>,
    },
}

/// The allocation unit of dual-mapped regions: 32 bytes (a thunk fits one).
pub(crate) const DUAL_GRANULE_SHIFT: u32 = 5;
/// `1 << DUAL_GRANULE_SHIFT`: one generated thunk.
pub(crate) const GRANULE: usize = 1 << DUAL_GRANULE_SHIFT;
const _: () = assert!(GRANULE == crate::arch::THUNK_CODE_MAX);

/// A region of a code heap.
#[derive(Debug)]
pub(crate) struct Region {
    size: usize,
    granule_shift: u32,
    backing: Backing,
    /// Granules in use.
    used: Bitmap,
    /// Pages that hold bytes (trap-filled or code) and so use memory.
    committed: Bitmap,
    free_granules: usize,
    committed_pages: usize,
    live: usize,
    cursor: usize,
    /// The process (and libc-fork epoch) the file and the read-write view
    /// belong to; see `fork.rs`.
    stamp: Stamp,
    /// Data slots for small closures (dual-mapped regions of thunk-sized
    /// granules only).
    data: Option<DataSlots>,
    /// What thunk handles need without the lock (regions with data slots
    /// only), boxed so that its address stays put.
    info: Option<Box<RegionInfo>>,
    /// Granules freed while the region could not be written (`strand`):
    /// out of use for good. Made on the first.
    stranded: Option<Bitmap>,
    /// How its code is mapped: read+exec, guarded unless the heap was built
    /// without branch protection ([`HeapBuilder::branch_protection`]).
    ///
    /// [`HeapBuilder::branch_protection`]: crate::HeapBuilder::branch_protection
    exec: Prot,
}

impl Region {
    /// Reserves a region of `size` bytes (a multiple of the page size) for
    /// `strategy`, with allocation granules of `1 << granule_shift` bytes.
    /// `index` and `shard` say where the heap keeps it.
    pub(crate) fn new(
        size: usize,
        strategy: CodeStrategy,
        strict: bool,
        granule_shift: u32,
        stamp: Stamp,
        (index, shard): (u32, u8),
        exec: Prot,
    ) -> Result<Region> {
        let page = sys::page_size();
        debug_assert!(size % page == 0 && size > 0);
        let backing = match strategy {
            CodeStrategy::Protect => {
                let base = Mapping::anon_near(size, Prot::None, super::placement::hint(size))
                    .map_err(|e| Error::os("mmap (heap region)", e))?;
                Backing::Protect { base }
            }
            CodeStrategy::DualMap | CodeStrategy::DualMapFile => {
                let file = policy::code_file(
                    strategy,
                    size,
                    [
                        "memfd_create (heap region)",
                        "creating a code file (heap region)",
                    ],
                )?;
                // An inaccessible reservation: each page is mapped read+exec
                // from the file when code is first written on it, so a page
                // never written is never reachable as code (and uses no
                // memory).
                let rx = file
                    .reserve_exec_view(size, super::placement::hint(size))
                    .map_err(|e| Error::os("mmap (heap region reservation)", e))?;
                let rw = if strict {
                    None
                } else {
                    Some(map_writable_view(&file, size)?)
                };
                Backing::DualMap { file, rx, rw }
            }
        };
        let granules = size >> granule_shift;
        let data = DataSlots::new(data::bytes_for(size, strategy, granule_shift))?;
        let info = match (&backing, &data) {
            (Backing::DualMap { rx, rw, .. }, Some(data)) => Some(Box::new(RegionInfo::new(
                rx.ptr().as_ptr() as usize,
                data.base().as_ptr() as usize,
                index,
                shard,
                // No writable view for the lock-free paths where each
                // entry is registered with Control Flow Guard: that is done
                // by the general write and free, which can fail.
                rw.as_ref()
                    .map(Mapping::ptr)
                    .filter(|_| !sys::call_targets_registered()),
                stamp,
            ))),
            _ => None,
        };
        Ok(Region {
            size,
            granule_shift,
            backing,
            used: Bitmap::new(granules),
            committed: Bitmap::new(size / page),
            free_granules: granules,
            committed_pages: 0,
            live: 0,
            cursor: 0,
            stamp,
            data,
            info,
            stranded: None,
            exec,
        })
    }

    /// The region's lock-free side, for thunk handles (regions with data
    /// slots only).
    #[inline]
    pub(crate) fn info(&self) -> Option<&RegionInfo> {
        self.info.as_deref()
    }

    /// The data slot paired with granule `start`, marked as using memory;
    /// `None` for a region without data slots.
    #[inline]
    pub(crate) fn data_slot(&mut self, start: usize) -> Option<NonNull<u8>> {
        self.data.as_mut()?.slot(start)
    }

    /// Address space a region of `size` bytes takes: its code and its data
    /// slots (what [`reserved_bytes`](Self::reserved_bytes) will say).
    pub(crate) fn reserved_for(size: usize, strategy: CodeStrategy, granule_shift: u32) -> usize {
        size + data::bytes_for(size, strategy, granule_shift)
    }

    /// Address space the region takes: its code and its data slots.
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.size + self.data.as_ref().map_or(0, DataSlots::len)
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn free_granules(&self) -> usize {
        self.free_granules
    }

    /// Pages that use memory: code pages holding bytes, and data pages a
    /// slot was handed out on.
    pub(crate) fn committed_pages(&self) -> usize {
        self.committed_pages + self.data.as_ref().map_or(0, DataSlots::committed_pages)
    }

    /// Bytes of bookkeeping kept for this region (outside the code).
    pub(crate) fn metadata_bytes(&self) -> usize {
        std::mem::size_of::<Region>()
            + self.used.heap_bytes()
            + self.committed.heap_bytes()
            + self.data.as_ref().map_or(0, DataSlots::metadata_bytes)
    }

    /// Where granule 0 runs.
    pub(crate) fn exec_base(&self) -> NonNull<u8> {
        match &self.backing {
            Backing::Protect { base } => base.ptr(),
            Backing::DualMap { rx, .. } => rx.ptr(),
        }
    }

    /// Finds `n` free granules aligned to `align` granules, searching from
    /// the cursor and wrapping once.
    pub(crate) fn find(&self, n: usize, align: usize) -> Option<usize> {
        if n > self.free_granules {
            return None;
        }
        let from = self.cursor.next_multiple_of(align).min(self.used_len());
        self.used.find_clear_run(from, n, align).or_else(|| {
            if from == 0 {
                None
            } else {
                self.used.find_clear_run(0, n, align).filter(|&s| s < from)
            }
        })
    }

    fn used_len(&self) -> usize {
        self.size >> self.granule_shift
    }

    #[inline]
    fn page_range(&self, start: usize, n: usize) -> (usize, usize) {
        let page_shift = sys::page_size().trailing_zeros();
        let first = (start << self.granule_shift) >> page_shift;
        let end = ((start + n) << self.granule_shift).div_ceil(1 << page_shift);
        (first, end - first)
    }

    /// Marks `start..start+n` in use. No memory is touched: pages are
    /// committed when code is written on them.
    pub(crate) fn take(&mut self, start: usize, n: usize) {
        self.used.set_range(start, n);
        self.free_granules -= n;
        self.live += 1;
        self.cursor = start + n;
    }

    /// Marks up to `max` allocations of `n` free granules right after the
    /// one at granule `start` (just taken by the caller) in use, each an
    /// allocation of its own, as long as they are free, on `start`'s page
    /// and in one bit-vector word; returns how many. A ready-granule refill
    /// takes a run with one search.
    pub(crate) fn take_following(&mut self, start: usize, n: usize, max: usize) -> usize {
        let per_page = (sys::page_size() >> self.granule_shift).max(1);
        let page_end = (start / per_page + 1) * per_page;
        let from = start + n;
        if from >= page_end {
            return 0;
        }
        let count = self
            .used
            .clear_run_in_word(from, (max * n).min(page_end - from))
            / n;
        if count > 0 {
            self.used.set_range(from, count * n);
            self.free_granules -= count * n;
            self.live += count;
            self.cursor = from + count * n;
        }
        count
    }

    /// Marks the whole region as one allocation without touching the bit
    /// vector (a region of its own for one large allocation: nothing is
    /// ever searched or freed in it granule by granule, so its bookkeeping
    /// stays untouched, zero pages that use no memory).
    pub(crate) fn take_whole(&mut self) {
        debug_assert_eq!(self.live, 0);
        self.free_granules = 0;
        self.live = 1;
    }

    /// Writes `code` at granule `start` of an allocation of `n` granules
    /// and makes it executable. The rest of the allocation holds traps.
    pub(crate) fn write(&mut self, start: usize, n: usize, code: &[u8]) -> Result<()> {
        let offset = start << self.granule_shift;
        let cap = n << self.granule_shift;
        debug_assert!(code.len() <= cap);
        debug_assert!(self.live == 1 && self.free_granules == 0 || self.used.all_set(start, n));
        if code.is_empty() {
            return Ok(());
        }
        if let Backing::DualMap { .. } = self.backing {
            self.commit_pages(offset, code.len())?;
        }
        match &self.backing {
            Backing::DualMap { file, rx, rw } => {
                match rw {
                    // SAFETY: `rw` maps the whole region read-write and the
                    // granules are ours (taken, under the heap lock); no one
                    // runs them before this write is published.
                    Some(rw) => unsafe {
                        std::ptr::copy_nonoverlapping(
                            code.as_ptr(),
                            rw.as_ptr().add(offset),
                            code.len(),
                        )
                    },
                    None => file
                        .write_at(offset, code)
                        .map_err(|e| Error::os("pwrite (heap memfd)", e))?,
                }
                // SAFETY: `offset + len <= size`, inside the region.
                let executed = unsafe { rx.as_ptr().add(offset) };
                // Written through the writable view (or by the kernel, for
                // `pwrite`: then only the executed view has the address).
                let written = match rw {
                    // SAFETY: as above.
                    Some(rw) => unsafe { rw.as_ptr().add(offset) },
                    None => executed,
                };
                sys::flush_icache_views(written, executed, code.len());
            }
            Backing::Protect { base } => {
                // Allocations are whole pages here (granule = page). Only the
                // pages the code covers become accessible (and use memory);
                // the rest of the allocation stays `PROT_NONE`.
                let cap = code.len().next_multiple_of(sys::page_size()).min(cap);
                let n = cap >> self.granule_shift;
                // SAFETY: the pages are ours alone and nothing runs them: a
                // page is only reused after the allocation that ran there was
                // freed.
                unsafe { base.protect(offset, cap, Prot::ReadWrite) }
                    .map_err(|e| Error::os("mprotect(PROT_READ|PROT_WRITE) (heap)", e))?;
                let at = base.at(offset);
                // SAFETY: `at..at+cap` is now writable and ours.
                let dst = unsafe { std::slice::from_raw_parts_mut(at.as_ptr(), cap) };
                dst[..code.len()].copy_from_slice(code);
                arch::fill_traps(&mut dst[code.len()..]);
                sys::flush_icache(at.as_ptr(), cap);
                // SAFETY: as above; sealing removes write access.
                let sealed = unsafe { base.protect(offset, cap, self.exec) };
                if let Err(e) = sealed {
                    // Leave the pages inaccessible rather than writable.
                    // SAFETY: as above.
                    let _ = unsafe { base.protect(offset, cap, Prot::None) };
                    return Err(Error::os("mprotect(PROT_READ|PROT_EXEC) (heap)", e));
                }
                let (first_page, pages) = self.page_range(start, n);
                self.committed_pages += pages - self.committed.count_range(first_page, pages);
                self.committed.mark_range(first_page, pages);
            }
        }
        if self.exec == Prot::ReadExecGuarded {
            // The entry (a thunk's, a span's start), as a valid target of
            // calls Control Flow Guard checks, where those are registered.
            let entry = self.exec_base().as_ptr() as usize + offset;
            sys::set_call_target(entry, true)
                .map_err(|e| Error::os("SetProcessValidCallTargets (heap)", e))?;
        }
        Ok(())
    }

    /// Frees `start..start+n`: the bytes become traps, and the granules can
    /// be allocated again at once.
    pub(crate) fn release(&mut self, start: usize, n: usize) {
        self.scrub(start, n);
        self.release_bits(start, n);
    }

    /// The read-write view of granule `start`, if the fast path of a
    /// one-granule thunk may use it: the region belongs to this process
    /// (`stamp`, see `fork.rs`), is not strict (it has a writable view),
    /// and the granule's page holds bytes already (nothing to commit).
    #[inline]
    pub(crate) fn granule_view(&self, start: usize, stamp: Stamp) -> Option<*mut u8> {
        let Backing::DualMap { rw: Some(rw), .. } = &self.backing else {
            return None;
        };
        if sys::call_targets_registered() {
            return None; // the general paths register each entry
        }
        let offset = start << self.granule_shift;
        let page = offset >> sys::page_size().trailing_zeros();
        (self.stamp == stamp && self.committed.get(page))
            // SAFETY: `start` is a granule of this region, so in the view.
            .then(|| unsafe { rw.as_ptr().add(offset) })
    }

    /// Makes freed granules harmless: their bytes become traps (where code
    /// was written on their pages). The granules stay marked in use.
    #[inline]
    pub(crate) fn scrub(&mut self, start: usize, n: usize) {
        let offset = start << self.granule_shift;
        let len = n << self.granule_shift;
        if self.exec == Prot::ReadExecGuarded && sys::call_targets_registered() {
            // No longer a target (it holds traps from now on either way).
            let entry = self.exec_base().as_ptr() as usize + offset;
            let _ = sys::set_call_target(entry, false);
        }
        match &self.backing {
            Backing::DualMap { .. } => {
                // Only committed pages can hold code; the others are not
                // reachable and must not be touched (that would commit them).
                let shift = sys::page_size().trailing_zeros();
                let first_page = offset >> shift;
                if (offset + len - 1) >> shift == first_page {
                    // The usual case: a thunk or a small span on one page.
                    if !self.committed.get(first_page) {
                        return;
                    }
                    if let Backing::DualMap {
                        rw: Some(rw), rx, ..
                    } = &self.backing
                    {
                        // SAFETY: inside the read-write view; the granules
                        // were just freed, so nothing may run them.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(rw.as_ptr().add(offset), len) };
                        arch::fill_traps(dst);
                        // SAFETY: inside the region.
                        let executed = unsafe { rx.as_ptr().add(offset) };
                        sys::flush_icache_views(dst.as_ptr(), executed, len);
                    } else {
                        let _ = self.fill_traps(offset, len);
                    }
                    return;
                }
                let (first_page, pages) = self.page_range(start, n);
                let page = sys::page_size();
                for p in first_page..first_page + pages {
                    if !self.committed.all_set(p, 1) {
                        continue;
                    }
                    let from = offset.max(p * page);
                    let to = (offset + len).min((p + 1) * page);
                    // A failed pwrite (strict heaps, ENOMEM) leaves the old
                    // bytes; the granules are overwritten when reused.
                    let _ = self.fill_traps(from, to - from);
                }
            }
            Backing::Protect { base } => {
                // The pages that held code get traps and go back to
                // read+exec, like their neighbours, so the kernel merges the
                // mapping again: freeing never leaves a mapping split (a
                // process has a bounded number, `vm.max_map_count`).
                // `compact` gives their memory back.
                let (first_page, pages) = self.page_range(start, n);
                let page = sys::page_size();
                for p in first_page..first_page + pages {
                    if !self.committed.all_set(p, 1) {
                        continue;
                    }
                    // SAFETY: the allocation is gone, so nothing may run
                    // this page any more (a page belongs to one allocation).
                    if unsafe { trap_fill_sealed(base, p * page, page, self.exec) }.is_err() {
                        // No mapping to spare: drop the page's contents
                        // instead (it reads as zeros: the old code is gone).
                        // SAFETY: as above.
                        let _ = unsafe { base.discard(p * page, page) };
                    }
                }
            }
        }
    }

    /// Returns scrubbed granules to the free space.
    #[inline]
    pub(crate) fn release_bits(&mut self, start: usize, n: usize) {
        self.used.clear_range(start, n);
        self.free_granules += n;
        self.live -= 1;
        self.cursor = start;
    }

    /// Returns `allocations` scrubbed allocations of equal length, the
    /// granules `start..start+granules`, to the free space at once.
    #[inline]
    pub(crate) fn release_run(&mut self, start: usize, granules: usize, allocations: usize) {
        self.used.clear_range(start, granules);
        self.free_granules += granules;
        self.live -= allocations;
        self.cursor = start;
    }
}

/// Fills `len` bytes of sealed (read+exec) code at `offset` of `base` with
/// traps and seals them again: read-write for the copy, then read+exec.
///
/// # Safety
/// `offset..offset+len` is whole pages of a protect region that no
/// allocation holds: nothing may run them.
unsafe fn trap_fill_sealed(
    base: &Mapping,
    offset: usize,
    len: usize,
    exec: Prot,
) -> std::io::Result<()> {
    // SAFETY: the caller owns the pages and nothing runs them.
    unsafe { base.protect(offset, len, Prot::ReadWrite) }?;
    let at = base.at(offset);
    // SAFETY: `at..at+len` is now writable and ours.
    arch::fill_traps(unsafe { std::slice::from_raw_parts_mut(at.as_ptr(), len) });
    sys::flush_icache(at.as_ptr(), len);
    // SAFETY: as above; sealing removes write access.
    let sealed = unsafe { base.protect(offset, len, exec) };
    if sealed.is_err() {
        // Not writable and executable, ever: leave the page inaccessible.
        // SAFETY: as above.
        let _ = unsafe { base.protect(offset, len, Prot::None) };
    }
    sealed
}

/// Maps the read-write view of a region's file, kept out of every child
/// process (`MADV_DONTFORK`): a child never holds a writable alias of its
/// parent's code, on any fork path.
fn map_writable_view(file: &CodeFile, size: usize) -> Result<Mapping> {
    let rw = file
        .map(size, Prot::ReadWrite)
        .map_err(|e| Error::os("mmap(PROT_READ|PROT_WRITE) of the heap memfd", e))?;
    rw.dont_fork()
        .map_err(|e| Error::os("madvise(MADV_DONTFORK) of the heap memfd view", e))?;
    Ok(rw)
}

impl Region {
    /// Keeps the code this region holds mapped read+exec for the rest of
    /// the process, and lets go of everything else: the file (its
    /// descriptor), the writable view, the bit vectors, the data slots.
    /// For a region nothing will allocate in, free in or write to again
    /// (`Heap::keep_only_quarantined_code`).
    #[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
    pub(crate) fn keep_code_only(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: each field is read once out of a region that is never
        // dropped (`ManuallyDrop`), so each is dropped or forgotten once.
        let (backing, used, committed, data, info, stranded) = unsafe {
            (
                std::ptr::read(&this.backing),
                std::ptr::read(&this.used),
                std::ptr::read(&this.committed),
                std::ptr::read(&this.data),
                std::ptr::read(&this.info),
                std::ptr::read(&this.stranded),
            )
        };
        drop((used, committed, data, info, stranded));
        match backing {
            Backing::DualMap { file, rx, rw } => {
                if this.stamp.is_this_process() {
                    drop(rw);
                } else {
                    // Not inherited by this fork child (see `drop`).
                    std::mem::forget(rw);
                }
                drop(file);
                rx.leak();
            }
            Backing::Protect { base } => {
                base.leak();
            }
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // The mappings unmap themselves (the heap drops a region only when no
        // allocation is live in it, or with the heap, which every allocation
        // borrows). But in a child that never wrote here, the writable view
        // was not inherited (MADV_DONTFORK): its range is not ours to unmap.
        if !self.stamp.is_this_process() {
            if let Backing::DualMap { rw, .. } = &mut self.backing {
                std::mem::forget(rw.take());
            }
        }
    }
}
